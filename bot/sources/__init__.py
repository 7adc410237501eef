"""Sources: fetch (httpx) → parse (bytes → entries) → normalize → store. One folder per step."""
