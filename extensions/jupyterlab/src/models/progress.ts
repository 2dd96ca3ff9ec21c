/**
 * Follows a replication rule until its data is available near compute, polling the
 * server's progress; a stuck rule keeps being followed (it may recover), more slowly.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { userMessage } from '../request';
import { IRuleProgress, ProgressState } from '../tokens';

export interface IProgressWatcherOptions {
  /** Reads the rule's progress. */
  read: (ruleId: string) => Promise<IRuleProgress>;
  /** Seconds between polls. */
  intervalSeconds?: number;
  /** Polls slow down by this factor while the rule is stuck. */
  stuckBackoff?: number;
  /** Give up after this many failed reads in a row. */
  maxFailures?: number;
  /** Timer functions (replaced in tests). */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

export class ProgressWatcher {
  constructor(
    readonly ruleId: string,
    options: IProgressWatcherOptions
  ) {
    this._read = options.read;
    this._interval = Math.max(0.2, options.intervalSeconds ?? 2) * 1000;
    this._backoff = options.stuckBackoff ?? 3;
    this._maxFailures = options.maxFailures ?? 5;
    this._setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimer =
      options.clearTimer ??
      (handle => clearTimeout(handle as ReturnType<typeof setTimeout>));
    this.done = new Promise<IRuleProgress>((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    // Nobody may wait on `done`: do not report its rejection as unhandled.
    this.done.catch(() => undefined);
  }

  /** Resolves with the last progress once the data is available. */
  readonly done: Promise<IRuleProgress>;

  /** The last progress read (`null` before the first). */
  get progress(): IRuleProgress | null {
    return this._progress;
  }

  /** The rule's state in the user's words (`waiting` before the first read). */
  get state(): ProgressState {
    return this._progress?.state ?? 'waiting';
  }

  /** The last read's error, if it failed. */
  get error(): string | null {
    return this._error;
  }

  get stopped(): boolean {
    return this._stopped;
  }

  /** Emitted after every poll. */
  get changed(): ISignal<this, IRuleProgress | null> {
    return this._changed;
  }

  /** Start polling (the first read is immediate). */
  start(): void {
    if (!this._stopped && this._handle === null && !this._reading) {
      void this._poll();
    }
  }

  /** Stop polling; `done` rejects if the data was not available yet. */
  stop(): void {
    if (this._stopped) {
      return;
    }
    this._stopped = true;
    if (this._handle !== null) {
      this._clearTimer(this._handle);
      this._handle = null;
    }
    this._reject(new Error(`Stopped following rule ${this.ruleId}.`));
  }

  private async _poll(): Promise<void> {
    this._handle = null;
    this._reading = true;
    try {
      this._progress = await this._read(this.ruleId);
      this._error = null;
      this._failures = 0;
    } catch (reason) {
      this._error = userMessage(reason);
      this._failures += 1;
    } finally {
      this._reading = false;
    }
    if (this._stopped) {
      return;
    }
    this._changed.emit(this._progress);
    if (this._progress?.state === 'available') {
      this._stopped = true;
      this._resolve(this._progress);
      return;
    }
    if (this._failures >= this._maxFailures) {
      this._stopped = true;
      this._reject(new Error(this._error ?? 'Progress could not be read.'));
      return;
    }
    const slow = this._progress?.state === 'stuck' || this._failures > 0;
    this._handle = this._setTimer(
      () => void this._poll(),
      slow ? this._interval * this._backoff : this._interval
    );
  }

  private _read: (ruleId: string) => Promise<IRuleProgress>;
  private _interval: number;
  private _backoff: number;
  private _maxFailures: number;
  private _setTimer: (fn: () => void, ms: number) => unknown;
  private _clearTimer: (handle: unknown) => void;
  private _resolve: (value: IRuleProgress) => void = () => undefined;
  private _reject: (reason: Error) => void = () => undefined;
  private _handle: unknown = null;
  private _reading = false;
  private _stopped = false;
  private _failures = 0;
  private _progress: IRuleProgress | null = null;
  private _error: string | null = null;
  private _changed = new Signal<this, IRuleProgress | null>(this);
}
