#!/usr/bin/env bash
# make bisect-demo: a whole `git bisect run` with the testbed as its test.  A small git history
# is made from the 3.14.40 release tarball: the release, then five commits (scripts/bisect-demo/),
# one of which changes what a netlink user sees (an MTU change announced once instead of twice,
# as upstream's rtnetlink_event did later).  `testbed run mtu-notify --kernel-source . --bisect`
# judges each commit: on a 3.14.40 tree mtu-notify expects two RTM_NEWLINK.  The demo fails
# unless the bisection names that commit.  The history and every step's build are cached: a
# second run costs only the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
project=$PWD
testbed=${TESTBED:-$project/.venv/bin/testbed}
cache=${TESTBED_CACHE:-$HOME/.cache/testbed}
repo=$cache/bisect/linux-3.14.40
git_() { git -C "$repo" -c user.name=testbed -c user.email=testbed@localhost -c advice.detachedHead=false "$@"; }

# subject of each commit, in order; the third changes the behaviour
subjects=("Documentation: netdevices: an unrelated change"
          "dummy: say why set_multicast_list does nothing"
          "rtnetlink: no RTM_NEWLINK for NETDEV_PRECHANGEMTU"
          "net: dev_set_mtu's comment names the MTU"
          "MAINTAINERS: an unrelated change")
patches=("$project"/scripts/bisect-demo/*.patch)
culprit=${subjects[2]}

if [[ ! -f $repo/.git/testbed-history ]]; then
  tarball=$("$testbed" kernel fetch linux-3.14 | sed -n 's/^setup: kernel linux-3.14: //p')
  [[ -f $tarball ]] || { echo "bisect-demo: testbed.yaml's linux-3.14 gave no tarball" >&2; exit 2; }
  echo "bisect-demo: making a git history from $tarball in $repo"
  rm -rf "$repo" && mkdir -p "$repo"
  tar -xf "$tarball" -C "$repo" --strip-components=1
  export GIT_AUTHOR_DATE="2015-04-29T12:00:00Z" GIT_COMMITTER_DATE="2015-04-29T12:00:00Z"
  git_ init -q
  git_ add -A && git_ commit -q -m "Linux 3.14.40"
  git_ tag v3.14.40
  for i in "${!patches[@]}"; do
    git_ apply "${patches[$i]}"
    git_ commit -q -a -m "${subjects[$i]}"
  done
  touch "$repo/.git/testbed-history"
fi

git_ bisect reset >/dev/null 2>&1 || true
git_ checkout -q master
git_ log --oneline v3.14.40~0..master | cat
echo "bisect-demo: git bisect start master v3.14.40; git bisect run testbed run mtu-notify --kernel-source . --bisect"
started=$(date +%s)
git_ bisect start master v3.14.40 >/dev/null
# each step timed: the build (or its cache) and the run
(cd "$repo" && git bisect run bash -c 'start=$(date +%s.%N); "$@"; status=$?;
  echo "bisect-demo: step $(git log -1 --format=%h) took $(echo "$(date +%s.%N) - $start" | bc | xargs printf %.0f) s, exit $status"
  exit $status' step "$testbed" --config "$project/testbed.yaml" run mtu-notify --kernel-source . --bisect) \
  | tee "$cache/bisect/last.log" | grep -E -A1 "^bisect-demo:|is the first bad commit|^(PASSED|FAILED):|built in|already built" | grep -v -E "^--$|^artifacts:"
first_bad=$(git_ log -1 --format=%s refs/bisect/bad)
git_ bisect reset >/dev/null
echo "bisect-demo: the first bad commit: \"$first_bad\" ($(( $(date +%s) - started )) s for the bisection)"
[[ $first_bad == "$culprit" ]] || { echo "bisect-demo: expected \"$culprit\"" >&2; exit 1; }
