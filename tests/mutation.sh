#!/bin/sh
# Mutation testing (docs/testing.md). With no argument: the sample recorded for issue 28's
# second slice: every mutant of up.py, live_config.py, envoy_files.py, supervise.py,
# signatures.py, server.py and of openai_format.py's tool-name functions, and one in five
# (those numbered *2 and *7) of sse.py, the Responses stream and exchange.py. With arguments:
# those mutant names or patterns (`all`: every one of [tool.mutmut]'s only_mutate).
set -e
cd "$(dirname "$0")/.."
# Each mutant is a pytest session of its own: build the tiny router model and the Qwen
# tokenizer's router directory once, up front.
export EXTPROC_TINY_MODEL_CACHE="$PWD/.cache/tiny-router"
.venv/bin/python -c "from tests.support.tiny_model import session_model_dir; session_model_dir(None)"
.venv/bin/python -c "from tests.support.qwen_tokenizer import session_qwen_dir; session_qwen_dir(None)"
if [ "$#" -eq 0 ]; then
    set -- "extproc.commands.up.*" "extproc.commands.live_config.*" \
        "extproc.control.envoy_files.*" "extproc.commands.supervise.*" \
        "extproc.translate.signatures.*" "extproc.proxy.server.*" \
        "extproc.translate.openai_format.x_provider_tool_name*" \
        "extproc.translate.openai_format.x_tool_names*" \
        "extproc.translate.openai_format.x_chat_tool_choice*" \
        "extproc.translate.sse.*__mutmut_*[27]" \
        "extproc.translate.openai_responses.stream.*__mutmut_*[27]" \
        "extproc.proxy.exchange.*__mutmut_*[27]"
elif [ "$1" = all ]; then
    set --
fi
.venv/bin/mutmut run --max-children "$(nproc)" "$@"
