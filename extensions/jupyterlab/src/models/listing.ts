/**
 * A cursor-paged listing read incrementally: the first page shows at once, later pages
 * are read when the view comes near the end of what is loaded.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { userMessage } from '../request';
import { IPage } from '../tokens';

/** Reads the page at a cursor (`null` is the first page). */
export type PageReader<T> = (
  cursor: string | null,
  limit: number
) => Promise<IPage<T>>;

export class PagedListing<T> {
  /**
   * @param read - reads one page
   * @param pageSize - items asked for per page
   */
  constructor(
    private readonly read: PageReader<T>,
    readonly pageSize = 200
  ) {}

  /** The items loaded so far. */
  get items(): readonly T[] {
    return this._items;
  }

  /** Whether a page is being read. */
  get loading(): boolean {
    return this._loading;
  }

  /** Whether every page has been read. */
  get complete(): boolean {
    return this._started && this._cursor === null;
  }

  /** The error of the last read, as the user's message (`null` when it went well). */
  get error(): string | null {
    return this._error;
  }

  /** Emitted whenever items, loading or error change. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /**
   * Read the next page (the first one on the first call). Calls while a page is being
   * read, or after the last page, return at once.
   */
  async loadMore(): Promise<void> {
    if (this._loading || this.complete || this._disposed) {
      return;
    }
    const generation = this._generation;
    this._loading = true;
    this._error = null;
    this._changed.emit();
    try {
      const page = await this.read(this._cursor, this.pageSize);
      if (generation !== this._generation || this._disposed) {
        return; // reset while reading: this page belongs to the old listing
      }
      this._items = this._items.concat(page.items);
      this._cursor = page.next_cursor;
      this._started = true;
    } catch (reason) {
      if (generation === this._generation) {
        this._error = userMessage(reason);
      }
    } finally {
      if (generation === this._generation) {
        this._loading = false;
        if (!this._disposed) {
          this._changed.emit();
        }
      }
    }
  }

  /**
   * Load pages until `index` is loaded or `ahead` items past the view's last visible one
   * are: what a virtual list calls as it scrolls.
   */
  async ensureLoaded(lastVisible: number, ahead = 50): Promise<void> {
    while (
      !this.complete &&
      !this._disposed &&
      this._error === null &&
      lastVisible + ahead >= this._items.length
    ) {
      const before = this._items.length;
      await this.loadMore();
      if (this._items.length === before && !this.complete) {
        return; // nothing came (error, or a read already running)
      }
    }
  }

  /** Forget everything read; the next `loadMore` starts from the first page. */
  reset(): void {
    this._generation += 1;
    this._items = [];
    this._cursor = null;
    this._started = false;
    this._loading = false;
    this._error = null;
    this._changed.emit();
  }

  dispose(): void {
    this._disposed = true;
    Signal.clearData(this);
  }

  private _items: T[] = [];
  private _cursor: string | null = null;
  private _started = false;
  private _loading = false;
  private _error: string | null = null;
  private _generation = 0;
  private _disposed = false;
  private _changed = new Signal<this, void>(this);
}
