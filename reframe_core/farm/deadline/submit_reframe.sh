#!/usr/bin/env bash
# Submit a ReFrame render to AWS Thinkbox Deadline as one Command Line job.
#
#   submit_reframe.sh /shared/shot.blend 1-240 24 [reframe-blender render options...]
#
# Deadline cuts the frame list into tasks of CHUNK frames; each task runs on a worker
#   reframe-blender render /shared/shot.blend --frames <STARTFRAME>-<ENDFRAME> --warmup 3 --quiet [options]
# which steps 3 warm-up frames before its first frame (never across a camera cut, where the render starts over
# anyway), prints Blender's "Saved: '...'" line per frame, and skips the frames an earlier, failed or requeued run
# of the task already wrote: a requeued task does not redo them. Every worker needs reframe-blender on its PATH
# (pip install reframe-blender, or the project's .venv/bin) and reaches the .blend and the output folder on
# shared storage at the same path.
#
# Chunks that break at camera cuts instead of every CHUNK frames: `reframe-blender farm FILE --chunk N
# --print-commands` prints one command line per chunk; submit each as its own job, or run them on Ray with
# `reframe-blender farm`.
#
# Environment: DEADLINE_POOL, DEADLINE_GROUP, DEADLINE_PRIORITY (optional), DEADLINECOMMAND (default
# deadlinecommand), REFRAME_BLENDER (the executable on the workers, default reframe-blender), REFRAME_WARMUP
# (warm-up frames per task, default 3).
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 FILE.blend FIRST-LAST CHUNK [reframe-blender render options...]" >&2
    exit 2
fi
blend=$1 frames=$2 chunk=$3
shift 3
if ! [[ $frames =~ ^[0-9]+(-[0-9]+)?$ ]]; then
    echo "$0: frames must be FIRST-LAST, e.g. 1-240 (got '$frames')" >&2
    exit 2
fi
case $chunk in
    '' | *[!0-9]* | 0) echo "$0: CHUNK must be a number of frames, at least 1 (got '$chunk')" >&2; exit 2 ;;
esac

# Deadline replaces <STARTFRAME>/<ENDFRAME> per task and <QUOTE> with a quote (paths with spaces).
arguments="render <QUOTE>${blend}<QUOTE> --frames <STARTFRAME>-<ENDFRAME> --warmup ${REFRAME_WARMUP:-3} --quiet"
for option in "$@"; do
    case $option in *'"'*) echo "$0: an option holds a double quote, which Deadline's <QUOTE> cannot carry: '$option'" >&2; exit 2 ;; esac
    arguments+=" <QUOTE>${option}<QUOTE>"
done

command=(
    "${DEADLINECOMMAND:-deadlinecommand}" -SubmitCommandLineJob
    -executable "${REFRAME_BLENDER:-reframe-blender}"
    -arguments "$arguments"
    -frames "$frames"
    -chunksize "$chunk"
    -name "ReFrame $(basename "$blend") $frames"
)
[ -n "${DEADLINE_POOL:-}" ] && command+=(-pool "$DEADLINE_POOL")
[ -n "${DEADLINE_GROUP:-}" ] && command+=(-group "$DEADLINE_GROUP")
[ -n "${DEADLINE_PRIORITY:-}" ] && command+=(-priority "$DEADLINE_PRIORITY")
exec "${command[@]}"
