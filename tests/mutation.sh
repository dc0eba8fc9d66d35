#!/bin/sh
# Mutation testing (docs/testing.md). With no argument: the recorded sample, every mutant of
# decision.py and upstream.py, one in five of routing.py and router/window.py, one in ten of
# exchange.py, translate/ and config/contract.py. With arguments: those mutant names or
# patterns (`all`: every one).
set -e
cd "$(dirname "$0")/.."
# Each mutant is a pytest session of its own: build the tiny router model and the Qwen
# tokenizer's router directory once, up front.
export EXTPROC_TINY_MODEL_CACHE="$PWD/.cache/tiny-router"
.venv/bin/python -c "from tests.support.tiny_model import session_model_dir; session_model_dir(None)"
.venv/bin/python -c "from tests.support.qwen_tokenizer import session_qwen_dir; session_qwen_dir(None)"
if [ "$#" -eq 0 ]; then
    set -- "extproc.decisions.decision.*" "extproc.providers.upstream.*" \
        "extproc.decisions.router.window.*__mutmut_*[05]" "extproc.decisions.routing.*__mutmut_*[05]" \
        "extproc.proxy.exchange.*__mutmut_*0" "extproc.translate.*__mutmut_*0" \
        "extproc.config.contract.*__mutmut_*0"
elif [ "$1" = all ]; then
    set --
fi
.venv/bin/mutmut run --max-children "$(nproc)" "$@"
