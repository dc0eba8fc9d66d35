#!/bin/sh
# Mutation testing (docs/testing.md). With no argument: the recorded sample, every mutant of
# the small modules (paths.py, budget.py, config/contract.py, reasoning.py), the router's
# decoding.py mutants numbered *7 and engine.py's numbered 7 and 17, and one in five (those
# numbered *2 and *7) of the others in [tool.mutmut]'s only_mutate. With arguments: those
# mutant names or patterns (`all`: every one).
set -e
cd "$(dirname "$0")/.."
# Each mutant is a pytest session of its own: build the tiny router model and the Qwen
# tokenizer's router directory once, up front.
export EXTPROC_TINY_MODEL_CACHE="$PWD/.cache/tiny-router"
.venv/bin/python -c "from tests.support.tiny_model import session_model_dir; session_model_dir(None)"
.venv/bin/python -c "from tests.support.qwen_tokenizer import session_qwen_dir; session_qwen_dir(None)"
if [ "$#" -eq 0 ]; then
    set -- "extproc.proxy.paths.*" "extproc.proxy.budget.*" \
        "extproc.config.contract.*" "extproc.translate.openai_responses.reasoning.*" \
        "extproc.decisions.router.decoding.*__mutmut_*7" \
        "extproc.decisions.router.engine.*__mutmut_7" "extproc.decisions.router.engine.*__mutmut_17" \
        "extproc.commands.evaluate.*__mutmut_*[27]" \
        "extproc.decisions.router.window.*__mutmut_*[27]" \
        "extproc.translate.openai_chat.request.*__mutmut_*[27]" \
        "extproc.translate.openai_responses.request.*__mutmut_*[27]" \
        "extproc.translate.openai_responses.response.*__mutmut_*[27]"
elif [ "$1" = all ]; then
    set --
fi
.venv/bin/mutmut run --max-children "$(nproc)" "$@"
