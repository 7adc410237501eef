"""The key that signs unsubscribe and confirmation links.

SECRET_KEY (settings.secret_key) wins. Without it, a key is made once and kept in
`data_dir/secret_key` (0600): fine on one machine, but processes that do not share that disk (a
Heroku web and worker dyno) must be given the same SECRET_KEY, or links made by one fail on the
other. The file holds hex text and the text itself is the key, so copying it into SECRET_KEY keeps
every link already sent working.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from bot.config import SECRET_FILE_NAME, Settings
from bot.errors import ConfigError

__all__ = ["SECRET_FILE_NAME", "resolve_secret"]  # the file's name lives in bot.config (config show)

_KEY_BYTES = 32
_MIN_KEY_CHARS = 32

log = logging.getLogger(__name__)


def resolve_secret(settings: Settings) -> bytes:
    """settings.secret_key if set, else the key kept in data_dir (made on first use)."""
    if settings.secret_key is not None:
        return settings.secret_key.encode("utf-8")
    return _read_or_create(settings.secret_key_file)


def _read_or_create(path: Path) -> bytes:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    key = secrets.token_hex(_KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link, unlike rename, refuses to replace: when two processes start at once, the
            # first key written is the one both use.
            os.link(tmp, path)
        except FileExistsError:
            return _read(path)
        except OSError:  # a file system without hard links
            os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the secret key file {path}: {exc.strerror}; "
            "set SECRET_KEY or make data_dir writable"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    log.info("created a secret key for signed links", extra={"path": str(path)})
    return key.encode("ascii")


def _read(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the secret key file {path}: {exc}") from None
    if len(text) < _MIN_KEY_CHARS:
        raise ConfigError(
            f"{path} holds no usable key (fewer than {_MIN_KEY_CHARS} characters); set SECRET_KEY, "
            "or delete the file to make a new key (links already sent then stop working)"
        )
    if stat.S_IMODE(mode) & 0o077:
        log.warning("the secret key file is readable by others; chmod 600 it", extra={"path": str(path)})
    return text.encode("utf-8")
