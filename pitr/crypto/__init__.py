"""Encryption at rest: key files and key ids, the wrapped data key, sealing a file's blocks.

docs/format.md, "Encryption", specifies every byte; docs/operations.md, "Keys:
creating, backing up, rotating, and what is lost with them", says how to use them.
"""

from pitr.crypto.cipher import DataKey, FileCipher
from pitr.crypto.keys import (
    KdfParams,
    KeyFile,
    create_key_file,
    derive_kek,
    key_id,
    read_key_file,
    unwrap_data_key,
    wrap_data_key,
)

__all__ = [
    "DataKey",
    "FileCipher",
    "KdfParams",
    "KeyFile",
    "create_key_file",
    "derive_kek",
    "key_id",
    "read_key_file",
    "unwrap_data_key",
    "wrap_data_key",
]
