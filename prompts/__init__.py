"""Prompt templates, shipped inside the package as ``rag.prompts``.

The ``.txt`` files beside this one are the templates; edit them to change how
the model is instructed. ``rag.prompt`` loads them at run time.
"""
