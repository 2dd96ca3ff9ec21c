/**
 * When a notebook's kernel has started anew: the first start, a change of kernel, a
 * restart asked for, or the server's automatic restart after the kernel died.
 */
import { ISignal } from '@lumino/signaling';

/** What of a JupyterLab `ISessionContext` this needs (kept small for tests). */
export interface IKernelSessionLike {
  readonly ready: Promise<void>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly statusChanged: ISignal<any, string>;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly kernelChanged: ISignal<any, { newValue: unknown }>;
}

/**
 * Call `started` once the session is ready, whenever it gets another kernel, and once
 * after each restart as soon as the new kernel speaks.
 *
 * Not on 'idle' alone after a restart: JupyterLab can stay 'starting' (or 'unknown'
 * after an automatic restart) until the first tracked request, because the kernel_info
 * exchange is untracked, so waiting for 'idle' could wait forever. A request sent once
 * the new kernel speaks is queued by the kernel connection until the restart is done.
 */
export function onKernelStarts(
  session: IKernelSessionLike,
  started: () => void
): void {
  let restarting = false;
  session.statusChanged.connect((_, status) => {
    if (status === 'restarting' || status === 'autorestarting') {
      restarting = true;
    } else if (
      restarting &&
      (status === 'starting' || status === 'idle' || status === 'busy')
    ) {
      restarting = false;
      started();
    }
  });
  session.kernelChanged.connect((_, change) => {
    if (change.newValue) {
      void session.ready.then(started);
    }
  });
  void session.ready.then(started);
}
