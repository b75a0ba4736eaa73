#!/usr/bin/env bash
# Run, or resume, the CPU campaign (config/cpu_campaign.yaml): He et al.'s ResNet-20 at the full
# protocol, 3 seeds, one job at a time on 2 threads, nice'd so tests and other work come first.
#
#   make cpu-campaign                      # in the background: nohup, log in results/cpu_campaign/campaign.log
#   .venv/bin/debench status cpu_campaign  # seeds done, epoch and error of the running one, time left
#
# The code is pinned: the first start records a commit in results/cpu_campaign/COMMIT and checks it
# out as a git worktree under .campaign/<commit>; every later start (a new session, a reboot) runs
# that same code, so editing src/ while the campaign runs never changes what a seed computes, and
# each record's provenance names the code that ran. Each train job resumes from its last
# checkpoint (one per epoch) when it is there; when the machine is new and the checkpoint gone,
# that seed starts again from iteration 0. CAMPAIGN_COMMIT=<sha> pins another commit (a new
# campaign: move results/cpu_campaign away first).
#
# CAMPAIGN_PRESET=cpu_campaign_lm runs the LM-ResNet-20 preset the same way (config/<preset>.yaml,
# results/<preset>/, its own pinned commit), for the difference against ResNet-20 (the Makefile's
# `make cpu-campaign CAMPAIGN=cpu_campaign_lm`).
#
# CAMPAIGN_PUBLISHED=results/published/runs.csv trains only the runs that table does not hold
# finished (a new machine, after some seeds were merged there: they are not trained again); the
# choice is kept in results/<preset>/PUBLISHED, so later restarts make it too, and `debench status`
# counts those runs as published. A start with no results/<preset>/COMMIT (a new machine) makes that
# choice by itself when results/published/runs.csv holds finished runs of the preset, and pins the
# commit they were trained at: a plain `make cpu-campaign` resumes on any machine.
#
# The campaign's state (results/<preset>/: pinned commit, checkpoints, records, logs, MLflow store)
# lives outside the checkout, in CAMPAIGN_STATE (default
# ${XDG_STATE_HOME:-~/.local/state}/debench<checkout path>/results/<preset>), and results/<preset>
# links there: a checkout recreated on the same machine (a session that gets its machine back but
# not its working folder) finds the link's target again and resumes instead of restarting every
# seed. A results/<preset> folder from before is moved there once. CAMPAIGN_STATE=none keeps it in
# the checkout.
#
# CAMPAIGN_BACKGROUND=1 (what `make cpu-campaign` sets) checks everything in the foreground, then
# leaves Snakemake running under nohup with its output in results/<preset>/campaign.log.
#
# Further arguments go to Snakemake (options, or target files).
set -euo pipefail
root=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
cd "$root"
preset=${CAMPAIGN_PRESET:-cpu_campaign}
out=results/$preset
pidfile=$out/campaign.pid
background=${CAMPAIGN_BACKGROUND:-}
say() {  # to the terminal, and to the campaign's log when Snakemake will write there
    echo "$*"
    if [ -n "$background" ] && [ -d "$out" ]; then echo "$*" >> "$out/campaign.log"; fi
}
alive() {  # a live campaign: not a zombie waiting for its parent to reap it, nor another program that
    # got the pid after a reboot; the pid is this script's until it execs Snakemake
    kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ] \
        && ps -o args= -p "$1" 2>/dev/null | grep -q -e snakemake -e cpu_campaign
}
running() {
    if [ -s "$pidfile" ] && alive "$(cat "$pidfile")"; then
        echo "$preset already running (pid $(cat "$pidfile")); follow it with: .venv/bin/debench status $preset" >&2
        exit 1
    fi
}
state_home=${XDG_STATE_HOME:-${HOME:+$HOME/.local/state}}
state=${CAMPAIGN_STATE-${state_home:+$state_home/debench$root/$out}}
if [ -n "$state" ] && [ "$state" != none ]; then
    case $state in /*) ;; *) echo "CAMPAIGN_STATE=$state: give an absolute path (or none)" >&2; exit 2 ;; esac
    if [ -L "$out" ]; then
        target=$(readlink "$out")
        if [ "$target" != "$state" ]; then
            if [ -d "$out" ] && [ -n "$(ls -A "$out/")" ]; then
                echo "$out links to $target, not to $state (CAMPAIGN_STATE): move one of them away, or" \
                    "set CAMPAIGN_STATE=$target" >&2
                exit 2
            fi
            rm "$out"
        fi
    elif [ -d "$out" ]; then  # kept in the checkout until now: move it out, once
        running
        if [ -d "$state" ] && [ -n "$(ls -A "$state/")" ]; then
            echo "both $out and $state hold $preset's state: move one of them away and start again" \
                "(CAMPAIGN_STATE=none keeps it in $out)" >&2
            exit 2
        fi
        mkdir -p "$(dirname "$state")"
        rmdir "$state" 2>/dev/null || true
        mv "$out" "$state"
        say "moved $out to $state"
    fi
    mkdir -p "$state" results
    [ -L "$out" ] || ln -s "$state" "$out"
    say "$preset keeps its state in $state ($out links there)"
fi
mkdir -p "$out"
if [ -n "${CAMPAIGN_COMMIT:-}" ]; then
    commit=$(git rev-parse "$CAMPAIGN_COMMIT^{commit}")
elif [ -s "$out/COMMIT" ]; then
    commit=$(cat "$out/COMMIT")
else
    # No pinned commit here: a first start, or a new machine that lost results/<preset>/. When the
    # published table already holds finished runs of this preset, pin the commit they ran at and
    # train only the runs it lacks, so a plain restart never retrains a published seed or runs the
    # rest at other code (fails, and says why, when those runs name no single commit).
    table=${CAMPAIGN_PUBLISHED:-results/published/runs.csv}
    commit=
    if [ -f "$table" ]; then
        commit=$("$root/.venv/bin/debench" status "$preset" --published "$table" --published-commit)
    fi
    if [ -n "$commit" ]; then
        CAMPAIGN_PUBLISHED=$table
        say "no $out/COMMIT: $table holds finished runs of $preset trained at ${commit:0:12}; pinning that" \
            "commit and training only the runs it lacks"
    else
        commit=$(git rev-parse HEAD)
    fi
fi
tree=$root/.campaign/$commit
if [ ! -d "$tree/src" ]; then
    git worktree prune
    git worktree add --detach "$tree" "$commit" >/dev/null
fi
echo "$commit" > "$out/COMMIT"
snakemake=${SNAKEMAKE:-$root/.venv/bin/snakemake}
# One campaign at a time: the pid file names the live one. A campaign killed by a stop (end of a
# session, a reboot) leaves Snakemake's directory lock behind; when the pid file's process is gone
# that lock is stale and is released here, so a plain restart resumes instead of failing.
running
echo $$ > "$pidfile"
if [ ! -f "$tree/config/$preset.yaml" ]; then
    echo "config/$preset.yaml is not in the pinned commit ${commit:0:12}: pin a commit that has it (CAMPAIGN_COMMIT=...)" >&2
    exit 2
fi
args=(-s "$tree/Snakefile" -d "$root" --configfile "$tree/config/$preset.yaml")
if [ -n "${CAMPAIGN_PUBLISHED:-}" ]; then
    if [ ! -f "$CAMPAIGN_PUBLISHED" ]; then
        echo "CAMPAIGN_PUBLISHED=$CAMPAIGN_PUBLISHED: no such file" >&2
        rm -f "$pidfile"
        exit 2
    fi
    echo "$CAMPAIGN_PUBLISHED" > "$out/PUBLISHED"
fi
targets=()
if [ -s "$out/PUBLISHED" ]; then
    # fails (and so does this script) when the table is gone or is not a run table
    todo=$("$root/.venv/bin/debench" status "$preset" --to-train)
    [ -n "$todo" ] && mapfile -t targets <<< "$todo"
    if [ ${#targets[@]} -eq 0 ]; then
        say "every run of $preset is finished here or in $(cat "$out/PUBLISHED"): nothing to train"
        rm -f "$pidfile"
        exit 0
    fi
    say "training the ${#targets[@]} run(s) not finished in $(cat "$out/PUBLISHED"): ${targets[*]}"
    targets=(-- "${targets[@]}")  # after `--`: --prioritize and --configfile take several values each
fi
# Seeds with a checkpoint go first (the furthest first), so a restart finishes a partly trained seed
# before it starts a new one; Snakemake alone picks any unfinished job. Read with the working tree's
# debench, before PYTHONPATH names the pinned one (older commits lack --resumable).
mapfile -t resume < <("$root/.venv/bin/debench" status "$preset" --resumable 2>/dev/null || true)
first=()
if [ ${#resume[@]} -gt 0 ]; then
    first=(--prioritize "${resume[@]}")
    say "resuming first: ${resume[*]}"
fi
# PYTHONPATH puts the pinned tree's debench before the editable install of the working tree
export PYTHONPATH="$tree/src${PYTHONPATH:+:$PYTHONPATH}"
"$snakemake" "${args[@]}" --unlock >/dev/null
say "$(date -u +%FT%TZ) $preset at ${commit:0:12} ($tree), pid $$"
cmd=(nice -n "${NICE:-19}" "$snakemake" "$@" "${args[@]}" --cores 2 --rerun-incomplete --keep-going "${first[@]}"
     "${targets[@]}")
if [ -n "$background" ]; then
    nohup "${cmd[@]}" >> "$out/campaign.log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
    echo "started (pid $!); follow it with: .venv/bin/debench status $preset (log: $out/campaign.log)"
    exit 0
fi
exec "${cmd[@]}"
