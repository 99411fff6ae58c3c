"""The code execution tool, run by Wisegate for backends that do not run it themselves.

``loop`` (the tool loop inside one Messages call), ``tools`` (one call: bash, text editor, Python),
``containers`` (container records, directories, skills, uploads, outputs, expiry) and ``sandbox`` (the
bubblewrap sandbox each call runs in). See docs/code-execution.md.
"""
