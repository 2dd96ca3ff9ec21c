import { ProgressWatcher } from '../src/models/progress';
import { TransfersModel } from '../src/models/transfers';
import {
  IAvailabilityRequest,
  IRuleProgress,
  ProgressState
} from '../src/tokens';

function progress(
  state: ProgressState,
  done: number,
  total = 4,
  stuck: string | null = null
): IRuleProgress {
  return {
    rule_id: 'r1',
    state,
    fraction: done / total,
    eta_seconds: state === 'replicating' ? 10 : null,
    rule: {
      id: 'r1',
      scope: 'cta',
      name: 'x',
      account: 'root',
      rse_expression: 'CERN-DISK',
      copies: 1,
      state:
        state === 'available'
          ? 'OK'
          : state === 'stuck'
            ? 'STUCK'
            : 'REPLICATING',
      locks_ok: done,
      locks_replicating: total - done,
      locks_stuck: state === 'stuck' ? 1 : 0,
      expires_at: null,
      created_at: null
    },
    files_done: done,
    files_total: total,
    bytes_done: done * 100,
    bytes_total: total * 100,
    stuck_reason: stuck
  };
}

/** Timers run by hand: `tick()` fires the pending one. */
function manualTimers() {
  const pending: Array<{ fn: () => void; ms: number }> = [];
  return {
    pending,
    setTimer: (fn: () => void, ms: number) => {
      const entry = { fn, ms };
      pending.push(entry);
      return entry;
    },
    clearTimer: (handle: unknown) => {
      const i = pending.indexOf(handle as { fn: () => void; ms: number });
      if (i >= 0) {
        pending.splice(i, 1);
      }
    },
    async tick() {
      const next = pending.shift();
      next?.fn();
      await new Promise(resolve => setTimeout(resolve, 0));
    }
  };
}

const flush = () => new Promise(resolve => setTimeout(resolve, 0));

describe('ProgressWatcher', () => {
  it('polls until the data is available, then resolves', async () => {
    const answers = [
      progress('waiting', 0),
      progress('replicating', 2),
      progress('available', 4)
    ];
    const timers = manualTimers();
    const watcher = new ProgressWatcher('r1', {
      read: () => Promise.resolve(answers.shift()!),
      intervalSeconds: 2,
      ...timers
    });
    const states: string[] = [];
    watcher.changed.connect(() => states.push(watcher.state));
    watcher.start();
    await flush();
    expect(timers.pending[0].ms).toBe(2000);
    await timers.tick();
    await timers.tick();
    await expect(watcher.done).resolves.toMatchObject({
      state: 'available',
      files_done: 4
    });
    expect(states).toEqual(['waiting', 'replicating', 'available']);
    expect(timers.pending.length).toBe(0);
    expect(watcher.stopped).toBe(true);
  });

  it('keeps following a stuck rule, more slowly', async () => {
    const timers = manualTimers();
    const watcher = new ProgressWatcher('r1', {
      read: () =>
        Promise.resolve(
          progress('stuck', 1, 4, 'checksum mismatch at DESY-DISK')
        ),
      intervalSeconds: 2,
      stuckBackoff: 3,
      ...timers
    });
    watcher.start();
    await flush();
    expect(watcher.state).toBe('stuck');
    expect(watcher.progress?.stuck_reason).toMatch(/checksum/);
    expect(timers.pending[0].ms).toBe(6000);
    watcher.stop();
    expect(timers.pending.length).toBe(0);
    await expect(watcher.done).rejects.toThrow(/Stopped/);
  });

  it('gives up after repeated failures, with the last message', async () => {
    const timers = manualTimers();
    const watcher = new ProgressWatcher('r1', {
      read: () => Promise.reject(new Error('Rule r1 not found.')),
      maxFailures: 2,
      ...timers
    });
    watcher.start();
    await flush();
    expect(watcher.error).toBe('Rule r1 not found.');
    await timers.tick();
    await expect(watcher.done).rejects.toThrow('Rule r1 not found.');
  });
});

describe('TransfersModel', () => {
  const request = (
    state: ProgressState,
    rule = true
  ): IAvailabilityRequest => ({
    did: 'cta:x',
    created: true,
    summary:
      'cta:x will be copied from PIC-DISK to CERN-DISK, near your compute.',
    destination: 'CERN-DISK',
    rule: rule ? progress('waiting', 0).rule : null,
    state,
    progress: rule
      ? {
          files_done: 0,
          files_total: 4,
          bytes_done: 0,
          bytes_total: 400,
          fraction: 0,
          eta_seconds: null,
          stuck_reason: null
        }
      : null
  });

  it('follows a request to available and tells once', async () => {
    const answers = [progress('replicating', 2), progress('available', 4)];
    const timers = manualTimers();
    const told: string[] = [];
    const model = new TransfersModel({
      read: () => Promise.resolve(answers.shift()!),
      onAvailable: t => told.push(`${t.did} ${t.state}`),
      ...timers
    });
    model.track(request('waiting'));
    expect(model.find('cta:x')?.fraction).toBe(0);
    await flush();
    expect(model.find('cta:x')).toMatchObject({
      state: 'replicating',
      filesDone: 2,
      bytesDone: 200
    });
    await timers.tick();
    expect(model.find('cta:x')).toMatchObject({
      state: 'available',
      fraction: 1
    });
    expect(told).toEqual(['cta:x available']);
    model.dispose();
  });

  it('tells about data already near compute at once, without polling', () => {
    const read = jest.fn();
    const told: string[] = [];
    const model = new TransfersModel({
      read,
      onAvailable: t => told.push(t.did)
    });
    model.track(request('available', false));
    expect(read).not.toHaveBeenCalled();
    expect(told).toEqual(['cta:x']);
  });

  it('tells once when stuck, with the reason', async () => {
    const timers = manualTimers();
    const stuck: string[] = [];
    const model = new TransfersModel({
      read: () =>
        Promise.resolve(progress('stuck', 1, 4, 'no space left at CERN-DISK')),
      onStuck: t => stuck.push(t.stuckReason ?? ''),
      ...timers
    });
    model.track(request('waiting'));
    await flush();
    await timers.tick();
    expect(stuck).toEqual(['no space left at CERN-DISK']);
    model.dispose();
    expect(timers.pending.length).toBe(0);
  });

  it('keeps one entry per DID, the newest first', () => {
    const model = new TransfersModel({
      read: () => new Promise(() => undefined)
    });
    model.track(request('waiting'));
    model.track({ ...request('waiting'), did: 'cta:y' });
    model.track(request('waiting'));
    expect(model.transfers.map(t => t.did)).toEqual(['cta:x', 'cta:y']);
    model.dispose();
  });
});
