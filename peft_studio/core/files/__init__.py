"""The studio's own files and every read of a user's file: bounded, typed, nothing executed."""
