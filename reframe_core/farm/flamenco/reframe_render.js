// SPDX-License-Identifier: GPL-3.0-or-later
//
// Flamenco 3 job type: a ReFrame render (cached neural supersampling / frame extrapolation) cut into chunks.
//
// Install: copy this file into the `scripts/` folder beside the Flamenco Manager executable and restart the
// Manager; "ReFrame Render" then shows in the Flamenco add-on's job types. Every worker's Blender needs the ReFrame
// add-on installed and set up (`reframe-blender addon install`, or Preferences > Add-ons), and reaches the .blend
// and the output folder on shared storage, as for any Flamenco render.
//
// Each task runs, in the worker's Blender:
//   blender -b -y FILE.blend --render-output OUT --python-exit-code 1 --python-expr
//       "import bpy; bpy.ops.reframe.render_animation(frame_start=A, frame_end=B, warmup=N)"
// which renders frames A-B with ReFrame after stepping N warm-up frames (never across a camera cut), prints
// Blender's `Saved: '...'` line per frame (Flamenco follows them), and skips frames a killed or failed earlier
// run of the task already wrote, so a requeued task does not redo them.
//
// Chunks break at camera cuts (the frames where timeline markers switch cameras, filled in by the add-on at
// submission) and split longer shots into near-equal chunks: the same cuts as `reframe-blender farm`
// (reframe_core/farm/chunks.py; a test holds the two to the same answers).

const JOB_TYPE = {
    label: "ReFrame Render",
    settings: [
        { key: "frames", type: "string", required: true,
          eval: "f'{C.scene.frame_start}-{C.scene.frame_end}'",
          evalInfo: { showLinkButton: true, description: "Scene frame range" },
          description: "Frame range to render, as A-B" },
        { key: "chunk_size", type: "int32", default: 24, propargs: { min: 1 },
          description: "Frames per task at most (chunks also break at camera cuts)", visible: "submission" },
        { key: "warmup", type: "int32", default: 3, propargs: { min: 0, max: 32 },
          eval: "C.scene.reframe.warmup",
          description: "Frames stepped (not written) before a task that starts inside a shot", visible: "submission" },
        { key: "cuts", type: "string", required: false,
          eval: "','.join(str(m.frame) for m in sorted(C.scene.timeline_markers, key=lambda m: m.frame) if m.camera)",
          description: "Frames where the camera switches (timeline markers bound to cameras)", visible: "submission" },
        { key: "render_output_root", type: "string", subtype: "dir_path", required: true, visible: "submission",
          description: "Base folder of the render output; job-specific parts are appended" },
        { key: "add_path_components", type: "int32", required: true, default: 0, propargs: { min: 0, max: 32 },
          visible: "submission", description: "Path components of the blend file to use in the output path" },
        { key: "render_output_path", type: "string", subtype: "file_path", editable: false,
          eval: "str(Path(abspath(settings.render_output_root), last_n_dir_parts(settings.add_path_components), jobname, '######'))",
          description: "Where the frames are written" },
        { key: "blendfile", type: "string", required: true, description: "The .blend file to render", visible: "web" },
    ],
};

// [first, last] frame runs seen by one camera: the range split at the cut frames inside it.
function reframeShots(first, last, cuts) {
    const inside = cuts.filter((f) => f > first && f <= last).sort((a, b) => a - b);
    const shots = [];
    let start = first;
    for (const cut of inside) {
        if (cut > start) {
            shots.push([start, cut - 1]);
            start = cut;
        }
    }
    shots.push([start, last]);
    return shots;
}

// Chunks {first, last, warmup, atCut}, as reframe_core.farm.chunks.plan_chunks cuts them.
function reframeChunks(first, last, cuts, size, warmup) {
    if (size < 1) throw `chunk_size must be at least 1, got ${size}`;
    const pieces = [];
    reframeShots(first, last, cuts).forEach(([a, b], index) => {
        const length = b - a + 1;
        const parts = Math.ceil(length / size);
        const base = Math.floor(length / parts);
        const extra = length % parts;
        let start = a;
        for (let part = 0; part < parts; part++) {
            const end = start + base + (part < extra ? 1 : 0) - 1;
            const atCut = part === 0 && index > 0;
            pieces.push({ first: start, last: end, warmup: atCut ? 0 : warmup, atCut: atCut });
            start = end + 1;
        }
    });
    const chunks = [];
    for (const piece of pieces) {
        const previous = chunks[chunks.length - 1];
        if (previous && piece.atCut && piece.last - previous.first + 1 <= size) {
            previous.last = piece.last;
        } else {
            chunks.push(piece);
        }
    }
    return chunks;
}

function parseRange(text) {
    const match = /^\s*(-?\d+)\s*(?:-\s*(-?\d+))?\s*$/.exec(`${text}`);
    if (!match) throw `frames must be A-B (one range), got "${text}"`;
    const first = parseInt(match[1], 10);
    const last = match[2] === undefined ? first : parseInt(match[2], 10);
    if (last < first) throw `frames "${text}": the last frame comes before the first`;
    return [first, last];
}

function compileJob(job) {
    const settings = job.settings;
    const [first, last] = parseRange(settings.frames);
    const cuts = `${settings.cuts || ""}`.split(",").filter((s) => s.trim() !== "").map((s) => parseInt(s, 10));
    const output = settings.render_output_path;
    if (!output) throw "no render_output_path setting";
    for (const chunk of reframeChunks(first, last, cuts, settings.chunk_size, settings.warmup)) {
        const name = `reframe-${chunk.first}-${chunk.last}`;
        const task = author.Task(name, "blender");
        task.addCommand(author.Command("blender-render", {
            exe: "{blender}",
            exeArgs: "{blenderArgs}",
            argsBefore: [],
            blendfile: settings.blendfile,
            args: [
                "--render-output", output,
                // A failed render raises in the expression; without this Blender would still exit 0 and Flamenco
                // would count the task done.
                "--python-exit-code", "1",
                // The setting's warm-up even at a cut: the render never warms up across a real camera switch, and
                // a marker that binds the camera already active is no cut at all.
                "--python-expr",
                `import bpy; bpy.ops.reframe.render_animation(frame_start=${chunk.first}, frame_end=${chunk.last}, warmup=${settings.warmup})`,
            ],
        }));
        job.addTask(task);
    }
}

// Node.js (the tests) reads the chunking; Flamenco's own runtime has no `module`.
if (typeof module !== "undefined") {
    module.exports = { JOB_TYPE, reframeChunks, reframeShots, compileJob };
}
