/**
 * completion: when is a run of an instrument complete? A policy per root:
 *
 *   plugins:
 *     - [completion, { preset: illumina }]                       # wait for the run's markers
 *     - [completion, { policy: quiet, preset: nanopore }]        # convert as today, track completion
 *     - [completion, { rules: [{ name: site, all: [DONE, md5sums.txt] }], onStall: convert }]
 *
 * Under `complete`, a run is converted once its instrument says it is complete (each marker at
 * least `markerAgeSeconds` old), then quiet-wait's quiet window; one stopped or failed
 * (RunCompletionStatus.xml) is aborted: converted, reported as such; one neither complete nor
 * written to for `staleAfterSeconds` is stalled: reported once, converted or left waiting as
 * `onStall` says. After the conversion the sweeps go on looking at runs not yet complete. The
 * states are the run's record (src/core/runs.ts): status, the metrics, notify's run events.
 * Lab administrators' page: docs/instruments.md.
 */
import { definePlugin, STAGE } from '../../src/index.js';
import { completionDoctor } from './doctor.js';
import { options, type Options } from './options.js';
import { policyName, rulesOf } from './presets.js';
import { completionSync } from './sync.js';
import type { Tracker } from './track.js';
import { completionWait } from './wait.js';

const NAME = 'completion';

export default definePlugin<Options>({
  name: NAME,
  description: "waits for a run's completion markers (Illumina, Nanopore, PacBio, a marker file); tells complete, aborted, stalled",
  options,
  apply(hooks, { options: opts }) {
    const rules = rulesOf(opts);
    const tracker: Tracker = { opts, rules, policy: policyName(opts), seen: new Map() };
    hooks.doctor.tapPromise(NAME, async (checks, doctor) => completionDoctor(checks, doctor, opts, rules));
    if (rules.length === 0) return; // the quiet policy without rules: nothing to judge
    hooks.wait.tapPromise({ name: NAME, stage: STAGE.completion }, completionWait(tracker));
    hooks.sync.tapPromise(NAME, completionSync(tracker));
  },
});
