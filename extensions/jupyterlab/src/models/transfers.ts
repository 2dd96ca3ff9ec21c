/**
 * The make-available requests of this session: one entry per DID, followed until its
 * data is available near compute (or shown as stuck, with the reason).
 */
import { ISignal, Signal } from '@lumino/signaling';

import { IAvailabilityRequest, IRuleProgress, ProgressState } from '../tokens';
import { ProgressWatcher } from './progress';

export interface ITransfer {
  did: string;
  ruleId: string | null;
  destination: string | null;
  summary: string;
  created: boolean;
  state: ProgressState;
  fraction: number;
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
  etaSeconds: number | null;
  stuckReason: string | null;
  error: string | null;
}

export interface ITransfersOptions {
  read: (ruleId: string) => Promise<IRuleProgress>;
  intervalSeconds?: () => number;
  /** Told once when a DID's data becomes available (for a notification). */
  onAvailable?: (transfer: ITransfer) => void;
  /** Told once when a DID becomes stuck. */
  onStuck?: (transfer: ITransfer) => void;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

export class TransfersModel {
  constructor(private readonly options: ITransfersOptions) {}

  get transfers(): readonly ITransfer[] {
    return this._transfers;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** The transfer of a DID, if one was requested in this session. */
  find(did: string): ITransfer | undefined {
    return this._transfers.find(t => t.did === did);
  }

  /** Follow what make-available answered for one DID. */
  track(request: IAvailabilityRequest): ITransfer {
    const p = request.progress;
    const transfer: ITransfer = {
      did: request.did,
      ruleId: request.rule?.id ?? null,
      destination: request.destination,
      summary: request.summary,
      created: request.created,
      state: request.state,
      fraction: p ? p.fraction : request.state === 'available' ? 1 : 0,
      filesDone: p?.files_done ?? 0,
      filesTotal: p?.files_total ?? 0,
      bytesDone: p?.bytes_done ?? 0,
      bytesTotal: p?.bytes_total ?? 0,
      etaSeconds: p?.eta_seconds ?? null,
      stuckReason: p?.stuck_reason ?? null,
      error: null
    };
    this._stopWatching(request.did);
    this._transfers = [
      transfer,
      ...this._transfers.filter(t => t.did !== request.did)
    ];
    this._changed.emit();
    if (transfer.state === 'available' || transfer.ruleId === null) {
      this.options.onAvailable?.(transfer);
      return transfer;
    }
    if (transfer.state === 'stuck') {
      this._stuckTold.add(transfer.did);
      this.options.onStuck?.(transfer);
    }
    const watcher = new ProgressWatcher(transfer.ruleId, {
      read: this.options.read,
      intervalSeconds: this.options.intervalSeconds?.() ?? 2,
      setTimer: this.options.setTimer,
      clearTimer: this.options.clearTimer
    });
    watcher.changed.connect((_, progress) =>
      this._update(request.did, watcher, progress)
    );
    this._watchers.set(request.did, watcher);
    watcher.start();
    return transfer;
  }

  /** Stop following every transfer. */
  dispose(): void {
    for (const did of [...this._watchers.keys()]) {
      this._stopWatching(did);
    }
    Signal.clearData(this);
  }

  private _update(
    did: string,
    watcher: ProgressWatcher,
    progress: IRuleProgress | null
  ): void {
    const index = this._transfers.findIndex(t => t.did === did);
    if (index < 0) {
      return;
    }
    const old = this._transfers[index];
    const next: ITransfer = progress
      ? {
          ...old,
          state: progress.state,
          fraction: progress.fraction,
          filesDone: progress.files_done,
          filesTotal: progress.files_total,
          bytesDone: progress.bytes_done,
          bytesTotal: progress.bytes_total,
          etaSeconds: progress.eta_seconds,
          stuckReason: progress.stuck_reason,
          error: watcher.error
        }
      : { ...old, error: watcher.error };
    this._transfers = this._transfers.map((t, i) => (i === index ? next : t));
    this._changed.emit();
    if (next.state === 'available' && old.state !== 'available') {
      this._watchers.delete(did);
      this.options.onAvailable?.(next);
    } else if (next.state === 'stuck' && !this._stuckTold.has(did)) {
      this._stuckTold.add(did);
      this.options.onStuck?.(next);
    } else if (next.state !== 'stuck') {
      this._stuckTold.delete(did);
    }
  }

  private _stopWatching(did: string): void {
    const watcher = this._watchers.get(did);
    if (watcher) {
      watcher.stop();
      this._watchers.delete(did);
    }
  }

  private _transfers: ITransfer[] = [];
  private _watchers = new Map<string, ProgressWatcher>();
  private _stuckTold = new Set<string>();
  private _changed = new Signal<this, void>(this);
}
