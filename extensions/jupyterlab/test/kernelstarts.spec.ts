import { Signal } from '@lumino/signaling';

import { onKernelStarts } from '../src/models/kernelstarts';

class FakeSession {
  ready = Promise.resolve();
  statusChanged = new Signal<this, string>(this);
  kernelChanged = new Signal<this, { newValue: unknown }>(this);
}

async function settle(): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, 0));
}

describe('onKernelStarts', () => {
  it('fires once the session is ready', async () => {
    const session = new FakeSession();
    const started = jest.fn();
    onKernelStarts(session, started);
    await settle();
    expect(started).toHaveBeenCalledTimes(1);
  });

  it('fires once after a restart asked for, when the new kernel says it is starting', async () => {
    const session = new FakeSession();
    const started = jest.fn();
    onKernelStarts(session, started);
    await settle();
    started.mockClear();
    // JupyterLab 4.6: 'restarting' (twice), then 'starting'; 'idle' only comes with the
    // first tracked request, which may never be sent.
    session.statusChanged.emit('restarting');
    session.statusChanged.emit('restarting');
    expect(started).not.toHaveBeenCalled();
    session.statusChanged.emit('starting');
    expect(started).toHaveBeenCalledTimes(1);
    session.statusChanged.emit('busy');
    session.statusChanged.emit('idle');
    expect(started).toHaveBeenCalledTimes(1);
  });

  it('fires after an automatic restart (the kernel died)', async () => {
    const session = new FakeSession();
    const started = jest.fn();
    onKernelStarts(session, started);
    await settle();
    started.mockClear();
    for (const status of ['restarting', 'autorestarting', 'unknown', 'idle']) {
      session.statusChanged.emit(status);
    }
    expect(started).toHaveBeenCalledTimes(1);
  });

  it('does not fire on ordinary busy and idle', async () => {
    const session = new FakeSession();
    const started = jest.fn();
    onKernelStarts(session, started);
    await settle();
    started.mockClear();
    session.statusChanged.emit('busy');
    session.statusChanged.emit('idle');
    expect(started).not.toHaveBeenCalled();
  });

  it('fires when the session gets another kernel, not when it loses it', async () => {
    const session = new FakeSession();
    const started = jest.fn();
    onKernelStarts(session, started);
    await settle();
    started.mockClear();
    session.kernelChanged.emit({ newValue: null });
    await settle();
    expect(started).not.toHaveBeenCalled();
    session.kernelChanged.emit({ newValue: {} });
    await settle();
    expect(started).toHaveBeenCalledTimes(1);
  });
});
