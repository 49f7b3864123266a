#!/bin/sh
# Supervisor event listener: on any event (uWSGI or nginx stopped), stop Supervisor,
# so the container exits, as tiangolo/uwsgi-nginx's stop-supervisor.sh does.
printf 'READY\n'
while read -r line; do
  echo "Processing Event: $line" >&2
  kill "$PPID"
done
