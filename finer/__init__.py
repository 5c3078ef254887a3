"""Shared core of finer-triton: FiNER word splitting, label scopes, windows and span decoding.

Training, evaluation, the Triton Python models and every baseline import these modules, so a
sentence is split, windowed and decoded the same way everywhere. Only numpy is needed here
(the Triton Python models run with this package and `tokenizers`, nothing heavier).
"""
