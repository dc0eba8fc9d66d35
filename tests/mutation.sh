#!/bin/sh
# Mutation testing (docs/testing.md). With no argument: the sample recorded for issue 28's
# third slice: every mutant of cooldown.py, chains.py, sessions.py, prices.py, statusline.py
# and capability.py. With arguments: those mutant names or patterns (`all`: every one of
# [tool.mutmut]'s only_mutate, the same six modules now).
set -e
cd "$(dirname "$0")/.."
# Each mutant is a pytest session of its own: build the tiny router model and the Qwen
# tokenizer's router directory once, up front.
export EXTPROC_TINY_MODEL_CACHE="$PWD/.cache/tiny-router"
.venv/bin/python -c "from tests.support.tiny_model import session_model_dir; session_model_dir(None)"
.venv/bin/python -c "from tests.support.qwen_tokenizer import session_qwen_dir; session_qwen_dir(None)"
if [ "$#" -eq 0 ]; then
    set -- "extproc.decisions.cooldown.*" "extproc.providers.chains.*" \
        "extproc.proxy.sessions.*" "extproc.config.prices.*" \
        "extproc.commands.statusline.*" "extproc.decisions.capability.*"
elif [ "$1" = all ]; then
    set --
fi
.venv/bin/mutmut run --max-children "$(nproc)" "$@"
