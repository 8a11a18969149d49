"""`SecretCipher`: shared secrets encrypted at rest with Fernet, several keys for rotation (`MultiFernet`).

New writes use the first key; reads try every key, so a rotation is: put the new
key first, deploy, run `store.rotate()` (every row re-encrypted with it), drop the
old key. Keys never appear in a repr, a log line or an exception.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = ["CipherSource", "Encrypting", "SecretCipher", "SecretDecryptionError"]


class SecretDecryptionError(Exception):
    """A stored secret could not be decrypted with any of the keys (a key was dropped too early, or changed)."""


class SecretCipher:
    """Fernet keys, the first one encrypting: `SecretCipher([new_key, old_key])`.

    ```python
    cipher = SecretCipher([os.environ["SECRET_ENCRYPTION_KEY"]])
    cipher = SecretCipher.from_key_file("/run/secrets/connect-keys")  # one key per line
    ```
    """

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if isinstance(keys, str | bytes):
            raise TypeError("keys is a list of Fernet keys, the first one encrypting")
        if not keys:
            raise ValueError("SecretCipher needs at least one Fernet key")
        try:
            fernets = [Fernet(key) for key in keys]
        except (ValueError, TypeError):
            raise ValueError("each key must be a Fernet key (32 url-safe base64-encoded bytes)") from None
        self._cipher = MultiFernet(fernets)
        self._encrypting = fernets[0]
        self._older = fernets[1:]

    def __repr__(self) -> str:
        return f"SecretCipher(<{1 + len(self._older)} key(s)>)"

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key."""
        return Fernet.generate_key().decode()

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str], *, create: bool = False) -> SecretCipher:
        """Keys from a file, one per line, first one encrypting; with `create`, a new file with one key if none exists.

        The file must be a regular file (not a symlink), owned by the user running
        the app, and readable by that user only (mode 0600): anything else is
        refused with a `PermissionError` that says how to fix it.
        """
        key_file = Path(path)
        if create:
            try:  # created once, readable by its owner only; another worker may have just made it
                descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(Fernet.generate_key() + b"\n")
        keys = [line.strip() for line in read_key_file(key_file).splitlines() if line.strip()]
        return cls(keys)

    def encrypt(self, secret: str) -> bytes:
        """`secret` encrypted with the first key."""
        return self._encrypting.encrypt(secret.encode())

    def decrypt(self, token: bytes) -> str:
        """The secret `token` holds, decrypted with whichever key made it."""
        try:
            return self._cipher.decrypt(token).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise SecretDecryptionError("A stored secret cannot be decrypted with any of the keys.") from None

    def rotate(self, token: bytes) -> bytes:
        """`token` re-encrypted with the first key."""
        try:
            return self._cipher.rotate(token)
        except InvalidToken:
            raise SecretDecryptionError("A stored secret cannot be decrypted with any of the keys.") from None


def read_key_file(key_file: Path) -> bytes:
    """The file's bytes, refused if it is a symlink, not a regular file, not ours, or readable by others."""
    try:
        descriptor = os.open(key_file, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermissionError(f"The key file {key_file} is a symlink: refusing it.") from None
        raise
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise PermissionError(f"The key file {key_file} is not a regular file.")
    with os.fdopen(descriptor, "rb") as file:
        if status.st_uid != os.geteuid():
            raise PermissionError(
                f"The key file {key_file} belongs to uid {status.st_uid}, not to the user running the app "
                f"(uid {os.geteuid()}): chown it."
            )
        if status.st_mode & 0o077:
            raise PermissionError(
                f"The key file {key_file} must be readable by its owner only (chmod 600 {key_file}); "
                f"it is mode {stat.S_IMODE(status.st_mode):o}."
            )
        return file.read()


CipherSource = SecretCipher | Callable[[], SecretCipher]
"""A `SecretCipher`, or a function making one when the store first needs it (keys read at startup, not import)."""


class Encrypting:
    """A store's `cipher`, made on first use when given as a function."""

    def __init__(self, cipher: CipherSource) -> None:
        self._cipher_source = cipher
        self._cipher = cipher if isinstance(cipher, SecretCipher) else None

    @property
    def cipher(self) -> SecretCipher:
        """The keys secrets are encrypted with."""
        if self._cipher is None:
            source = self._cipher_source
            self._cipher = source if isinstance(source, SecretCipher) else source()
        return self._cipher
