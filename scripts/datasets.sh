#!/usr/bin/env bash
# Renders the EEVEE datasets behind the shipped weights' model cards and README's quality figures, into out/.
#
#   bash scripts/datasets.sh [GROUP ...]     (make datasets: every group, in this order)
#
# Groups, most needed first:
#   heldout      the held-out sets at 256x256 (scales 1, 2): slow_pan, emissive_transparent, furnished_room;
#                what `eval --workload ss|fe` reads (README "Quality status", the model cards)
#   heldout360   the same three at 640x360 (out/data360/)
#   training     the nine 256x256 training sets of ss_x2.pt and fe_extranet.pt; slow_pan and emissive_transparent
#                (heldout) with fast_orbit, camera_cut and handheld are also what `bench` reads
#   training360  the two 640x360 training sets of ss_x2.pt (out/data360t/)
#   scales       the 1.5x and 3x inputs beside the 256x256 sets (ss_x1.5.pt, ss_x3.pt) and the held-out sets at
#                both sizes
#   cheap        FE's cheap pass (dataset --cheap, at each set's own samples) of the held-out sets at both sizes
#                (out/cheap/, out/cheap360/: what `eval --workload fe --cheap-data` reads) and of the nine training
#                sets (fe_extranet.pt relights with it)
#
# Each `reframe-blender dataset` call is resumable: frames already on disk are kept, so an interrupted run picks up
# where it stopped, and a finished group costs nothing to run again. EEVEE on this project's 2-core CPU takes about
# 2-40 s per frame (scene and size); `heldout` takes about an hour, all groups several hours.
set -euo pipefail
cd "$(dirname "$0")/.."
RF=${RF:-reframe-blender}
OUT=${OUT:-out}

ds() {  # ds SCENE FRAMES SAMPLES DIR [more dataset flags]
    local scene=$1 frames=$2 samples=$3 dir=$4
    shift 4
    echo "== $scene frames $frames, $samples samples $* -> $dir ($(date -u +%H:%M:%S))"
    "$RF" dataset --scene "$scene" --frames "$frames" --samples "$samples" --out "$dir" --quiet "$@"
}

held_out_256() {  # held_out_256 SCALES: the held-out sets' frames and samples, in one place for every scale
    ds slow_pan 1-16 16 "$OUT/data/slow_pan" --scales "$1" --resolution 256
    ds emissive_transparent 1-16 8 "$OUT/data/emissive_transparent" --scales "$1" --resolution 256
    ds furnished_room 1-12 16 "$OUT/data/furnished_room" --scales "$1" --resolution 256
}

held_out_360() {  # held_out_360 SCALES
    for scene in slow_pan emissive_transparent furnished_room; do
        ds "$scene" 1-12 8 "$OUT/data360/$scene" --scales "$1" --resolution 640x360
    done
}

heldout() { held_out_256 1,2; }

heldout360() { held_out_360 1,2; }

training() {
    ds fast_orbit 1-32 8 "$OUT/data/fast_orbit" --scales 1,2 --resolution 256
    ds camera_cut 17-32 8 "$OUT/data/camera_cut" --scales 1,2 --resolution 256
    for scene in handheld dolly_interior static_objects thin_detail sunlit_kitchen bedroom_study; do
        ds "$scene" 1-16 8 "$OUT/data/$scene" --scales 1,2 --resolution 256
    done
    ds night_market 1-24 8 "$OUT/data/night_market" --scales 1,2 --resolution 256
}

training360() {
    for scene in sunlit_kitchen night_market; do
        ds "$scene" 1-12 8 "$OUT/data360t/$scene" --scales 1,2 --resolution 640x360
    done
}

scales() {
    ds fast_orbit 1-16 8 "$OUT/data/fast_orbit" --scales 1.5,3 --resolution 256
    ds camera_cut 17-32 8 "$OUT/data/camera_cut" --scales 1.5,3 --resolution 256
    for scene in dolly_interior handheld thin_detail night_market sunlit_kitchen; do
        ds "$scene" 1-16 8 "$OUT/data/$scene" --scales 1.5,3 --resolution 256
    done
    held_out_256 1.5,3
    held_out_360 1.5,3
}

cheap() {  # the frames and samples of heldout, heldout360 and training, one scale, the cheap pass
    ds slow_pan 1-16 16 "$OUT/cheap/slow_pan" --scales 1 --resolution 256 --cheap
    ds emissive_transparent 1-16 8 "$OUT/cheap/emissive_transparent" --scales 1 --resolution 256 --cheap
    ds furnished_room 1-12 16 "$OUT/cheap/furnished_room" --scales 1 --resolution 256 --cheap
    for scene in slow_pan emissive_transparent furnished_room; do
        ds "$scene" 1-12 8 "$OUT/cheap360/$scene" --scales 1 --resolution 640x360 --cheap
    done
    ds fast_orbit 1-32 8 "$OUT/cheap/fast_orbit" --scales 1 --resolution 256 --cheap
    ds camera_cut 17-32 8 "$OUT/cheap/camera_cut" --scales 1 --resolution 256 --cheap
    for scene in handheld dolly_interior static_objects thin_detail sunlit_kitchen bedroom_study; do
        ds "$scene" 1-16 8 "$OUT/cheap/$scene" --scales 1 --resolution 256 --cheap
    done
    ds night_market 1-24 8 "$OUT/cheap/night_market" --scales 1 --resolution 256 --cheap
}

ALL=(heldout heldout360 training training360 scales cheap)
groups=("$@")
[ ${#groups[@]} -gt 0 ] || groups=("${ALL[@]}")
for group in "${groups[@]}"; do  # every name checked before anything renders
    case " ${ALL[*]} " in
        *" $group "*) ;;
        *) names=$(printf '%s, ' "${ALL[@]}")
           echo "datasets.sh: unknown group '$group': one of ${names%, }" >&2; exit 2 ;;
    esac
done
for group in "${groups[@]}"; do
    "$group"
done
