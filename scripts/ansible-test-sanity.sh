#!/usr/bin/env bash
# Run `ansible-test sanity` for the pyike.ipsec collection on a machine that reaches PyPI only.
#
#   scripts/ansible-test-sanity.sh [extra ansible-test sanity args, e.g. --test validate-modules]
#
# Environment:
#   SRC_ROOT   checkout to test (default: this script's parent directory)
#   VENV       virtualenv holding ansible-core/ansible-test (default: $SRC_ROOT/.venv)
#   SANITY_PYTHON  controller Python version for --python (default: 3.11)
#   BUILD_DIR  where the ansible_collections/pyike/ipsec tree is laid (default: $SRC_ROOT/.build/sanity)
#
# What it does, idempotently:
#   1. Puts an offline stand-in for ansible-test's pip bootstrap script (get-pip) into
#      ~/.ansible/test/cache/get_pip_<X_Y>.py, plus the pinned pip wheel it installs from.
#      ansible-test otherwise downloads get-pip-<X.Y>.py from a host that is not reachable here.
#   2. Copies the checkout's files (git ls-files -co --exclude-standard) to
#      $BUILD_DIR/ansible_collections/pyike/ipsec (ansible-test needs that path and os.getcwd()
#      resolves symlinks), makes it a one-commit git repo (ansible-test lists files through git).
#   3. Runs `ansible-test sanity --venv --python $SANITY_PYTHON "$@"` there; exit code is ansible-test's.
# Cached between runs: the sanity venvs in ~/.ansible/test/venv and the delegation venv in
# $BUILD_DIR/.../tests/output/.tmp/delegation.
set -euo pipefail

started=$(date +%s)

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
SRC_ROOT=$(cd "${SRC_ROOT:-$script_dir/..}" && pwd -P)
VENV=${VENV:-$SRC_ROOT/.venv}
SANITY_PYTHON=${SANITY_PYTHON:-3.11}
BUILD_DIR=${BUILD_DIR:-$SRC_ROOT/.build/sanity}
COLLECTION_NAMESPACE=pyike
COLLECTION_NAME=ipsec

log() { printf '[ansible-test-sanity] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

python=$VENV/bin/python
[[ -x $python && -x $VENV/bin/ansible-test ]] || die "no ansible-test in venv $VENV (set VENV=...)"
git -C "$SRC_ROOT" rev-parse --git-dir >/dev/null 2>&1 || die "$SRC_ROOT is not inside a git work tree"

mkdir -p "$BUILD_DIR"
BUILD_DIR=$(cd "$BUILD_DIR" && pwd -P)
coll_dir=$BUILD_DIR/ansible_collections/$COLLECTION_NAMESPACE/$COLLECTION_NAME

# One run at a time per build dir (the tree is wiped and rebuilt below).
exec 9>"$BUILD_DIR/.lock"
flock 9

# ---------------------------------------------------------------------------------------------
# 1. pip bootstrap stand-in
#
# ansible_test/_util/target/setup/requirements.py:bootstrap() looks for
#   ~/.ansible/test/cache/get_pip_<version with _ for .>.py
# and only downloads https://ci-files.testing.ansible.com/ansible-test/get-pip-<version>.py when it
# is missing. It then runs, with the python of a new `python -m venv --without-pip` environment:
#   GET_PIP=<that file> python quiet_pip.py --disable-pip-version-check pip==<version> --no-setuptools --no-wheel
# and quiet_pip.py runpy-executes the file as __main__ with those arguments (like get-pip.py).
# The pinned version comes from ansible_test._internal.python_requirements.get_venv_packages().
# ---------------------------------------------------------------------------------------------
cache_dir=$("$python" -c 'import os; print(os.path.expanduser("~/.ansible/test/cache"))')
wheel_dir=$cache_dir/get_pip_offline_wheels
mkdir -p "$wheel_dir"

# "name==version" of every infrastructure package ansible-test bootstraps for this Python.
mapfile -t infra_pkgs < <("$python" - "$SANITY_PYTHON" <<'EOF'
import re, sys, types
version = sys.argv[1]
try:
    from ansible_test._internal.python_requirements import get_venv_packages
    pkgs = get_venv_packages(types.SimpleNamespace(version=version))
except Exception:  # fall back to reading the pin from the source
    import ansible_test, os
    src = open(os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')).read()
    pkgs = {'pip': re.search(r"pip='([^']+)'", src).group(1)}
for name, ver in pkgs.items():
    print(f'{name}=={ver}')
EOF
)
[[ ${#infra_pkgs[@]} -gt 0 ]] || die "could not determine the pip version ansible-test pins"

for req in "${infra_pkgs[@]}"; do
    name=${req%%==*}; ver=${req#*==}
    # wheel file names use the normalized project name with "_" (pip-24.2-py3-none-any.whl)
    pattern="$(tr '[:upper:]-.' '[:lower:]__' <<<"$name")-$ver-*.whl"
    if ! compgen -G "$wheel_dir/$pattern" >/dev/null; then
        log "downloading $req wheel from PyPI into $wheel_dir"
        "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --python-version "$SANITY_PYTHON" --dest "$wheel_dir" "$req"
    fi
done

standin_marker='PYIKE-OFFLINE-GET-PIP-STANDIN'
for req in "${infra_pkgs[@]}"; do
    [[ ${req%%==*} == pip ]] || continue
    ver=${req#*==}
    target=$cache_dir/get_pip_${ver//./_}.py
    if [[ -e $target ]] && ! grep -q "$standin_marker" "$target"; then
        log "keeping existing (real?) bootstrap script $target"
        continue
    fi
    tmp=$(mktemp "$cache_dir/.get_pip.XXXXXX")
    cat >"$tmp" <<EOF
# $standin_marker -- written by pyike.ipsec scripts/ansible-test-sanity.sh; safe to delete.
"""Offline stand-in for ansible-test's get-pip-$ver.py.

ansible-test runs this with the python of an empty venv and arguments like
'--disable-pip-version-check pip==$ver --no-setuptools --no-wheel'. Like the real get-pip.py it
imports pip from a wheel and runs 'pip install --upgrade --force-reinstall <args>', but from wheels
in get_pip_offline_wheels/ next to this file (--no-index), so nothing is downloaded.
"""
import glob
import os
import re
import sys

WHEEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'get_pip_offline_wheels')


def main():
    args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
    wanted = None
    for arg in args:
        match = re.match(r'^pip==(\S+)$', arg)
        if match:
            wanted = match.group(1)
    wheels = sorted(glob.glob(os.path.join(WHEEL_DIR, 'pip-*.whl')))
    if wanted:
        wheels = [w for w in wheels if os.path.basename(w).startswith('pip-%s-' % wanted)]
    if not wheels:
        sys.exit('offline get-pip stand-in: no pip%s wheel in %s; run scripts/ansible-test-sanity.sh once online'
                 % ('==' + wanted if wanted else '', WHEEL_DIR))
    sys.path.insert(0, wheels[-1])
    from pip._internal.cli.main import main as pip_main
    return pip_main(['install', '--upgrade', '--force-reinstall', '--no-index', '--find-links', WHEEL_DIR] + args)


if __name__ == '__main__':
    sys.exit(main())
EOF
    chmod 644 "$tmp"
    if cmp -s "$tmp" "$target"; then rm -f "$tmp"; else mv -f "$tmp" "$target"; log "wrote $target"; fi
done

# ---------------------------------------------------------------------------------------------
# 2. Lay out ansible_collections/pyike/ipsec with exactly the files git would show.
# ---------------------------------------------------------------------------------------------
mkdir -p "$coll_dir"
excludes=(.build/ tests/output/)
for p in "$BUILD_DIR" "$(cd "$VENV" && pwd -P)"; do
    [[ $p == "$SRC_ROOT"/* ]] && excludes+=("${p#"$SRC_ROOT"/}/")
done

list_file=$BUILD_DIR/.files
: >"$list_file"
count=0
while IFS= read -r -d '' f; do
    for e in "${excludes[@]}"; do [[ $f == "$e"* ]] && continue 2; done
    # tracked but deleted in the work tree: skip (ansible-test would skip it too)
    [[ -e $SRC_ROOT/$f || -L $SRC_ROOT/$f ]] || continue
    printf '%s\0' "$f" >>"$list_file"
    count=$((count + 1))
done < <(git -C "$SRC_ROOT" ls-files -z -co --exclude-standard)

# Fresh tree: remove everything except the cached delegation venv under tests/output/.tmp.
find "$coll_dir" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
if [[ -d $coll_dir/tests ]]; then
    find "$coll_dir/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
    if [[ -d $coll_dir/tests/output ]]; then
        find "$coll_dir/tests/output" -mindepth 1 -maxdepth 1 ! -name .tmp -exec rm -rf {} +
        [[ -d $coll_dir/tests/output/.tmp ]] &&
            find "$coll_dir/tests/output/.tmp" -mindepth 1 -maxdepth 1 ! -name delegation -exec rm -rf {} +
    fi
fi

if [[ $count -gt 0 ]]; then
    tar -C "$SRC_ROOT" --null --no-recursion -T "$list_file" -cf - | tar -C "$coll_dir" -xf -
fi
log "copied $count files from $SRC_ROOT to $coll_dir"

# The engine (plugins/module_utils/pyike) imports cryptography and pyroute2, which targets get from
# their distribution and which ansible-test's import sandbox does not have. Its imports are proven
# instead by `make target-unit` (the unit tests under the hosts' /usr/bin/python3). Every other
# file keeps the import test. The list is generated so that new engine files are covered.
ansible_version=$("$VENV/bin/python" -c 'import ansible.release as r; print(".".join(r.__version__.split(".")[:2]))')
ignore_file="$coll_dir/tests/sanity/ignore-$ansible_version.txt"
mkdir -p "$(dirname "$ignore_file")"
# The inventory code and the validate action use the engine's config loader, so the same applies.
(cd "$coll_dir" && { find plugins/module_utils/pyike plugins/module_utils/pyike_inventory -name '*.py'; echo plugins/action/validate.py; } |
    sort | sed "s/\$/ import-$SANITY_PYTHON!skip/") >>"$ignore_file"
printf '%s\n' "$ignore_file" | sed "s#^$coll_dir/##" | tr '\n' '\0' >>"$list_file"

git_q=(git -C "$coll_dir" --literal-pathspecs -c init.defaultBranch=main -c user.name=ansible-test-sanity
       -c user.email=ansible-test-sanity@localhost -c commit.gpgsign=false -c core.hooksPath=/dev/null)
"${git_q[@]}" init -q
printf '/tests/output/\n' >"$coll_dir/.git/info/exclude"
if [[ $count -gt 0 ]]; then
    "${git_q[@]}" add -f --pathspec-from-file="$list_file" --pathspec-file-nul
fi
"${git_q[@]}" commit -q --allow-empty --no-verify -m "sanity snapshot of $SRC_ROOT"

# ---------------------------------------------------------------------------------------------
# 3. Run ansible-test.
# ---------------------------------------------------------------------------------------------
cd "$coll_dir"
export PATH="$VENV/bin:$PATH"
log "running: ansible-test sanity --venv --python $SANITY_PYTHON $* (in $coll_dir)"
rc=0
"$VENV/bin/ansible-test" sanity --venv --python "$SANITY_PYTHON" "$@" || rc=$?
log "ansible-test exit code $rc after $(($(date +%s) - started)) s"
exit "$rc"
