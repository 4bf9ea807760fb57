#!/usr/bin/env bash
# The session lifecycle driven by nothing but the `aether` command:
#   create from a git repo -> edit -> checkpoint -> fork two proposals ->
#   annotate -> request approval -> approve -> commit -> export -> delete.
#
# Needs AETHER_SERVER (and AETHER_TOKEN) pointing at a running daemon that may
# read $WORK (tests/test_e2e.py sets all three); `git` only builds the source
# repository. Every step checks what it got; any failure exits non-zero.
set -euo pipefail

: "${AETHER:=aether}"
: "${WORK:?WORK must be a scratch directory}"
say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
expect_eq() { [[ "$1" == "$2" ]] || fail "$3: expected '$2', got '$1'"; }

say "a git repository to start from"
repo="$WORK/repo"
mkdir -p "$repo/src"
printf 'def greet(name):\n    return "hello " + name\n' > "$repo/src/app.py"
printf '# demo\n' > "$repo/README.md"
git -C "$repo" -c init.defaultBranch=main init -q
git -C "$repo" add -A
git -C "$repo" -c user.name=e2e -c user.email=e2e@aetherfs.invalid commit -q -m "initial"

say "create a session from it"
ses=$($AETHER -q session create --from-git "$repo" --name e2e-main --label team=e2e)
[[ "$ses" == ses_* ]] || fail "session id: $ses"
$AETHER session show "$ses"
expect_eq "$($AETHER fs cat "$ses" README.md)" "# demo" "imported README"

say "edit: change a file, add one"
printf 'def greet(name):\n    return f"hello, {name}!"\n' | $AETHER fs put "$ses" src/app.py -
echo "print('hi')" | $AETHER -q fs put "$ses" src/cli.py - > /dev/null
$AETHER diff "$ses" --stat
expect_eq "$($AETHER diff "$ses" --name-only | sort | tr '\n' ' ')" "src/app.py src/cli.py " "changed paths"

say "checkpoint"
ckp=$($AETHER -q checkpoint create "$ses" -m "greeting reworked")
[[ "$ckp" == ckp_* ]] || fail "checkpoint id: $ckp"

say "fork two proposals"
prop_a=$($AETHER -q session fork "$ses" --name proposal-a)
prop_b=$($AETHER -q session fork "$ses" --name proposal-b --at "$ckp")
echo "VERSION = 'a'" | $AETHER -q fs put "$prop_a" src/version.py - > /dev/null
echo "VERSION = 'b'" | $AETHER -q fs put "$prop_b" src/version.py - > /dev/null
expect_eq "$($AETHER fs cat "$prop_a" src/version.py)" "VERSION = 'a'" "proposal a"
expect_eq "$($AETHER fs cat "$prop_b" src/version.py)" "VERSION = 'b'" "proposal b"
code=0; $AETHER fs stat "$ses" src/version.py > /dev/null 2>&1 || code=$?
expect_eq "$code" "3" "the parent must not see the fork's file (exit code)"

say "annotate proposal a"
ann=$($AETHER -q review annotate "$prop_a" src/version.py 1 "pick a name, not a letter")
[[ -n "$ann" ]] || fail "annotation id"
$AETHER review annotations "$prop_a"

say "require an approval to commit; request it, approve"
$AETHER session policy "$prop_a" commit_requires_approval=true min_approvals=1
code=0; $AETHER commit create "$prop_a" -m "too early" 2> "$WORK/early.err" || code=$?
expect_eq "$code" "1" "exit code for a commit without approval"
grep -q "failed_precondition" "$WORK/early.err" || fail "commit refusal: $(cat "$WORK/early.err")"
apr=$($AETHER -q review request "$prop_a" -m "ship proposal a")
$AETHER review approve "$prop_a" "$apr" -m "looks good"
$AETHER --json review approvals "$prop_a" | grep -q '"APPROVAL_STATE_APPROVED"' || fail "approval not recorded"

say "commit"
cmt=$($AETHER -q commit create "$prop_a" -m "proposal a")
[[ "$cmt" == cmt_* ]] || fail "commit id: $cmt"

say "export the commit's state"
$AETHER export "$prop_a" --at "$cmt" -o "$WORK/result.tar.gz"
tar -xzf "$WORK/result.tar.gz" -C "$WORK" src/version.py
expect_eq "$(cat "$WORK/src/version.py")" "VERSION = 'a'" "exported file"

say "delete the sessions; the commit outlives them"
for s in "$prop_b" "$prop_a" "$ses"; do $AETHER session rm --yes "$s"; done
code=0; $AETHER session show "$ses" > /dev/null 2>&1 || code=$?
expect_eq "$code" "3" "exit code for a deleted session"
$AETHER commit show "$cmt"
echo
echo "lifecycle OK"
