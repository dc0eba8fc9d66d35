"""Convert a Hugging Face checkpoint (Arch-Router) to a CTranslate2 model directory.

The router loads the tokenizer (and its chat template) from the same directory as the model,
so the tokenizer files travel with the converted weights.
"""

from __future__ import annotations

import os
from pathlib import Path

# Everything AutoTokenizer and the chat template may need, when the source has it.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)


class ConvertError(Exception):
    """Conversion could not run or failed; the message says what to do."""


def _present_files(src: str) -> list[str]:
    """The tokenizer files that exist in a local directory or a Hugging Face Hub repo."""
    if os.path.isdir(src):
        return [name for name in TOKENIZER_FILES if os.path.isfile(os.path.join(src, name))]
    from huggingface_hub import list_repo_files

    available = set(list_repo_files(src))
    return [name for name in TOKENIZER_FILES if name in available]


def convert(src: str, out: str | Path, *, quantization: str = "int8", force: bool = False) -> Path:
    """Convert ``src`` (a Hub id or a local directory) into ``out`` with ``quantization``.

    int8 is the default: on a CPU it is the fastest compute type and costs Arch-Router no
    measurable accuracy; pass ``float16``/``bfloat16``/``float32``/``int8_float16``... to
    choose another (CTranslate2 converts again at load time if the device needs it).
    """
    try:
        import torch  # noqa: F401  (the converter needs it; fail here with a useful hint)
        from ctranslate2.converters import TransformersConverter
    except ImportError as exc:
        raise ConvertError(
            f"converting a model needs torch ({exc}); "
            "install it with: pip install 'extproc[convert]'"
        ) from exc
    out = Path(out)
    if out.exists() and not force:
        raise ConvertError(f"{out} already exists; pass force=True (--force) to replace it")
    converter = TransformersConverter(
        src,
        copy_files=_present_files(src),
        load_as_float16=quantization in ("float16", "int8_float16", "bfloat16", "int8_bfloat16"),
    )
    try:
        converter.convert(str(out), quantization=quantization, force=force)
    except (OSError, ValueError, RuntimeError, NotImplementedError) as exc:
        raise ConvertError(f"converting {src} to {out} failed: {exc}") from exc
    return out
