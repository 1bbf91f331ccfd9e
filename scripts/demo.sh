#!/usr/bin/env bash
# `make demo`: a 5-agent local hive, end to end, through the real `amplihack-hive` command.
# Create, start, learn the sample corpus (turn i goes to agent i mod 5), ask three questions
# of agents that did NOT learn the answer, show status, stop.
# The hive lives in a fresh AMPLIHACK_HOME (a temp folder) unless you set one.
set -euo pipefail
cd "$(dirname "$0")/.."

HIVE_CMD=${HIVE_CMD:-amplihack-hive}
export AMPLIHACK_HOME=${AMPLIHACK_HOME:-$(mktemp -d -t amplihack-demo.XXXXXX)}
HIVE=${HIVE:-demo}
echo "== AMPLIHACK_HOME=$AMPLIHACK_HOME"

cleanup() { "$HIVE_CMD" stop --hive "$HIVE" >/dev/null 2>&1 || true; }
trap cleanup EXIT

step() { echo; echo "== $*"; }

step "create a 5-agent local hive"
"$HIVE_CMD" create --name "$HIVE" --agents 5 --force

step "start (one process per agent; waits until each reports ready)"
"$HIVE_CMD" start --hive "$HIVE" --timeout 90

step "learn configs/sample_corpus.txt (40 turns, round robin over 5 agents)"
"$HIVE_CMD" learn --hive "$HIVE" --file configs/sample_corpus.txt

# Line 34 (Osprey) was learned by agent_3, line 6 (search p99) by agent_0, line 40 (DR drill)
# by agent_4; each question goes to a different agent, which must reach the owner shards.
step "ask agent_1: who leads Project Osprey? (learned by agent_3)"
"$HIVE_CMD" ask --hive "$HIVE" --agent agent_1 "Who leads Project Osprey?"

step "ask agent_2: search service p99 latency target? (learned by agent_0)"
"$HIVE_CMD" ask --hive "$HIVE" --agent agent_2 "What is the p99 latency target of the search service?"

step "ask agent_0: disaster recovery drill? (learned by agent_4)"
"$HIVE_CMD" ask --hive "$HIVE" --agent agent_0 "How long did the disaster recovery drill take to restore the primary database?"

step "status"
"$HIVE_CMD" status --hive "$HIVE"

step "stop"
"$HIVE_CMD" stop --hive "$HIVE"
trap - EXIT
echo; echo "== done (hive files left in $AMPLIHACK_HOME/hives/$HIVE)"
