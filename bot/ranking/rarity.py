"""How rare a word is in general English: the background half of "rare and bursty".

A headline word that everyone writes ("says", "new", "stocks") tells little about which event an
article reports; one that English seldom uses ("Plosser", "Snowden", "taper") tells a lot. The
frequencies come from wordfreq's small English list (about 29,000 words, shipped inside the
package, ~18 MB resident once loaded, read once per process on first use; nothing is downloaded).
"""

from __future__ import annotations

from functools import cache
from typing import Final

ZIPF_CEILING: Final = 7.0  # "the", "of", "and" (Zipf ≥ 7) carry nothing
MAX_RARITY: Final = 6.0  # a word wordfreq does not list at all (a name, a new coinage)
NUMBER_RARITY: Final = 2.0  # "40", "2014": common as a kind, telling only together with words


@cache
def _frequencies() -> dict[str, float]:
    from wordfreq import get_frequency_dict  # imported late: only clustering needs it

    return dict(get_frequency_dict("en", wordlist="small"))


def rarity(word: str) -> float:
    """0 (a function word) … MAX_RARITY (unknown to general English), for a lowercase word.

    Zipf scale: log10 of the frequency per billion words; "bird" 4.6 → 2.4, "snowden" 3.4 → 3.6.
    """
    if word[:1].isdigit():
        return NUMBER_RARITY + (1.0 if "." in word else 0.0)  # a version ("1.90") names a release
    frequency = _frequencies().get(word)
    if not frequency:
        return MAX_RARITY
    from math import log10

    return min(MAX_RARITY, max(0.0, ZIPF_CEILING - (log10(frequency) + 9.0)))
