"""Where passages are stored and searched: one interface (``rag.stores.base``), two stores.

``rag.stores.folder`` is the default, everything in one folder; ``rag.stores.milvus`` puts
the same index in a Milvus collection (the ``milvus`` extra). ``rag.stores.factory`` picks
one by the ``store`` setting.
"""
