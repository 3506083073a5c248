"""``python -m rag``: the same as the ``rag`` command."""

from rag.cli import app

# Guarded so that importing the module (as tests that walk the package do) runs no command.
if __name__ == "__main__":
    app()
