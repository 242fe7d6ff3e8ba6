# Sourced by the study scripts: new_run_folder ROOT creates and prints a fresh folder ROOT/<date>-<time>
# (ROOT/<date>-<time>-2, -3, ... when a run started in the same second took it), so that a run never reads
# or overwrites an earlier one.
new_run_folder() {
  local root=$1 stamp run n=1
  mkdir -p "$root"
  root=$(cd "$root" && pwd)
  stamp=$(date +%Y%m%d-%H%M%S)
  run=$root/$stamp
  until mkdir "$run" 2>/dev/null; do
    [ -e "$run" ] || { mkdir "$run" || return; break; }  # not taken: retry, or mkdir says what is wrong
    n=$((n + 1))
    run=$root/$stamp-$n
  done
  echo "$run"
}
