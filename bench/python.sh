# Sourced by bench/run and bench/simulate, with $repo set: sets $python to
# $PYTHON if set, else the repository's .venv, made the way README says when missing.
if [ -n "${PYTHON:-}" ]; then
    python="$PYTHON"
elif [ -x "$repo/.venv/bin/python" ]; then
    python="$repo/.venv/bin/python"
else
    echo "bench/$(basename "$0"): creating .venv" >&2
    (cd "$repo" && python3 -m venv .venv &&
        .venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=compat) >&2
    python="$repo/.venv/bin/python"
fi
