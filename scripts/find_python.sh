#!/usr/bin/env bash
# Print the path of a Python interpreter of version $1 (e.g. 3.10): python3.10 on
# PATH, else a pyenv-installed one; exit 1 with a hint when there is none.
set -euo pipefail
want=${1:?usage: find_python.sh 3.10}
is_it() { "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" 2>/dev/null; }
for cand in "python$want" "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/"$want".*/bin/python"$want"; do
    path=$(command -v "$cand" 2>/dev/null || true)
    if [[ -n $path ]] && is_it "$path"; then echo "$path"; exit 0; fi
done
echo "no Python $want found: install it (pyenv install $want, apt-get install python$want) or set LOWER_PYTHON" >&2
exit 1
