import { PagedListing } from '../src/models/listing';
import { IPage } from '../src/tokens';

/** A fake listing of `total` numbered items served `limit` at a time. */
function server(total: number) {
  const reads: Array<{ cursor: string | null; limit: number }> = [];
  const read = (
    cursor: string | null,
    limit: number
  ): Promise<IPage<number>> => {
    reads.push({ cursor, limit });
    const start = cursor ? Number(cursor) : 0;
    const end = Math.min(total, start + limit);
    const items = Array.from({ length: end - start }, (_, i) => start + i);
    return Promise.resolve({
      items,
      next_cursor: end < total ? String(end) : null
    });
  };
  return { read, reads };
}

describe('PagedListing', () => {
  it('reads the first page only, then the next on demand', async () => {
    const { read, reads } = server(100_000);
    const listing = new PagedListing(read, 200);
    await listing.loadMore();
    expect(listing.items.length).toBe(200);
    expect(listing.complete).toBe(false);
    expect(reads).toEqual([{ cursor: null, limit: 200 }]);
    await listing.loadMore();
    expect(listing.items.length).toBe(400);
    expect(listing.items[399]).toBe(399);
    expect(reads[1]).toEqual({ cursor: '200', limit: 200 });
  });

  it('loads just enough ahead of the last visible row', async () => {
    const { read, reads } = server(100_000);
    const listing = new PagedListing(read, 100);
    await listing.ensureLoaded(0, 50);
    expect(listing.items.length).toBe(100);
    await listing.ensureLoaded(40, 50);
    expect(reads.length).toBe(1); // 40 + 50 < 100: nothing more
    await listing.ensureLoaded(260, 50);
    expect(listing.items.length).toBe(400);
  });

  it('stops after the last page', async () => {
    const { read, reads } = server(250);
    const listing = new PagedListing(read, 100);
    await listing.ensureLoaded(10_000);
    expect(listing.items.length).toBe(250);
    expect(listing.complete).toBe(true);
    await listing.loadMore();
    expect(reads.length).toBe(3);
  });

  it('reads one page at a time even when asked twice', async () => {
    const { read, reads } = server(1000);
    const listing = new PagedListing(read, 100);
    await Promise.all([listing.loadMore(), listing.loadMore()]);
    expect(reads.length).toBe(1);
  });

  it('keeps the error as a message and tries again on the next call', async () => {
    let fail = true;
    const listing = new PagedListing<number>(() => {
      if (fail) {
        return Promise.reject(new Error('The lake is down.'));
      }
      return Promise.resolve({ items: [1], next_cursor: null });
    });
    let changes = 0;
    listing.changed.connect(() => (changes += 1));
    await listing.loadMore();
    expect(listing.error).toBe('The lake is down.');
    expect(listing.loading).toBe(false);
    await listing.ensureLoaded(5); // does not spin on an error
    fail = false;
    await listing.loadMore();
    expect(listing.error).toBeNull();
    expect(listing.items).toEqual([1]);
    expect(changes).toBeGreaterThanOrEqual(4);
  });

  it('drops a page that arrives after a reset', async () => {
    let release: (page: IPage<number>) => void = () => undefined;
    const listing = new PagedListing<number>(
      () => new Promise<IPage<number>>(resolve => (release = resolve))
    );
    const pending = listing.loadMore();
    listing.reset();
    release({ items: [1, 2], next_cursor: null });
    await pending;
    expect(listing.items).toEqual([]);
    expect(listing.complete).toBe(false);
  });
});
