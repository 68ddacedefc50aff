#!/bin/sh
# A worker that waits for the test to open a gate (a line on the FIFO
# $NC_GATE, when it exists) before it becomes the real worker.
if [ -p "$NC_GATE" ]; then
	read -r _ <"$NC_GATE"
fi
exec "$NC_REAL_WORKER" "$@"
