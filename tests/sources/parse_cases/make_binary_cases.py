"""Write the parse cases whose bytes a text editor would mangle: other encodings, a BOM, noise.

    .venv/bin/python tests/sources/parse_cases/make_binary_cases.py

The output is deterministic; test_parse.py checks that the files match what this writes.
"""

from __future__ import annotations

import codecs
import random
from pathlib import Path

HERE = Path(__file__).parent

LATIN1_DECLARED = """<?xml version="1.0" encoding="iso-8859-1"?>
<rss version="2.0">
  <channel>
    <title>Caf\u00e9 des D\u00e9veloppeurs</title>
    <link>https://cafe-dev.example.fr/</link>
    <item>
      <title>R\u00e9sum\u00e9 de la semaine \u2014 \u00e9t\u00e9 2025</title>
      <link>https://cafe-dev.example.fr/resume-ete</link>
      <guid isPermaLink="false">cafe-dev-301</guid>
      <description>L\u2019\u00e9quipe a livr\u00e9 la version 2.0\u2026 enfin !</description>
      <pubDate>Mon, 01 Sep 2025 08:00:00 +0200</pubDate>
    </item>
  </channel>
</rss>
"""

UTF16_BOM = """<?xml version="1.0" encoding="UTF-16"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>\u30c7\u30fc\u30bf\u30d9\u30fc\u30b9\u65e5\u8a18 \u2014 Donn\u00e9es</title>
  <link href="https://db-diary.example.jp/"/>
  <id>https://db-diary.example.jp/</id>
  <updated>2025-08-30T12:00:00+09:00</updated>
  <entry>
    <title>\u7d22\u5f15\u306e\u8a71 (indexes)</title>
    <link href="https://db-diary.example.jp/posts/indexes"/>
    <id>urn:uuid:6f1c2b0e-2d4b-4c8e-9a57-1f0e9d7c1a01</id>
    <updated>2025-08-30T12:00:00+09:00</updated>
    <summary>B-tree \u3068 LSM-tree \u306e\u9055\u3044\u3002</summary>
  </entry>
</feed>
"""

CP1252_NO_DECLARATION = """<rss version="2.0">
  <channel>
    <title>Smart \u201cQuotes\u201d Weekly</title>
    <link>https://quotes.example.com/</link>
    <item>
      <title>Don\u2019t panic \u2013 it\u2019s only Unicode</title>
      <link>https://quotes.example.com/dont-panic</link>
      <description>Na\u00efve code meets \u201csmart\u201d quotes\u2026 and \u20ac signs.</description>
    </item>
  </channel>
</rss>
"""

UTF8_BOM_WHITESPACE = """
  <?xml version="1.0" encoding="utf-8"?>
<rss version="2.0">
  <channel>
    <title>Leading Whitespace Gazette</title>
    <link>https://lwg.example.com/</link>
    <item>
      <title>Whitespace before the XML declaration \u2713</title>
      <link>https://lwg.example.com/ws</link>
    </item>
  </channel>
</rss>
"""


def binary_cases() -> dict[str, bytes]:
    """File name → bytes for every binary case."""
    noise = random.Random(20250901)
    return {
        "latin1_declared.bin": LATIN1_DECLARED.encode("cp1252"),
        "utf16_bom.bin": codecs.BOM_UTF16_LE + UTF16_BOM.encode("utf-16-le"),
        "cp1252_charset_from_header.bin": CP1252_NO_DECLARATION.encode("cp1252"),
        "utf8_bom_whitespace.bin": codecs.BOM_UTF8 + UTF8_BOM_WHITESPACE.encode("utf-8"),
        "garbage.bin": bytes(noise.randrange(256) for _ in range(2048)),
    }


def main() -> None:
    for name, data in binary_cases().items():
        (HERE / name).write_bytes(data)
        print(f"wrote {name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
