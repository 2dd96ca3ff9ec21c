import { collectPages, PortalAPI, Requester } from '../src/api';
import { QueryValue } from '../src/request';
import { IPage, IWatch } from '../src/tokens';
import { watchSummary } from '../src/models/format';

interface ICall {
  path: string;
  init?: RequestInit;
  query?: Record<string, QueryValue>;
}

function fake(answers: unknown[] = [{}]): { api: PortalAPI; calls: ICall[] } {
  const calls: ICall[] = [];
  const request = ((
    path: string,
    init?: RequestInit,
    query?: Record<string, QueryValue>
  ) => {
    calls.push({ path, init, query });
    return Promise.resolve(answers.length > 1 ? answers.shift() : answers[0]);
  }) as Requester;
  return { api: new PortalAPI(request), calls };
}

describe('PortalAPI', () => {
  it('asks the server to work with another instance', async () => {
    const answer = { active: 'lake-b', instances: [] };
    const { api, calls } = fake([answer]);
    expect(await api.useInstance('lake-b')).toEqual(answer);
    expect(calls[0].path).toBe('instances/active');
    expect(calls[0].init?.method).toBe('POST');
    expect(JSON.parse(String(calls[0].init?.body))).toEqual({ name: 'lake-b' });
  });

  it('searches DIDs with scope, pattern, type, filters and the cursor', async () => {
    const { api, calls } = fake([{ items: [], next_cursor: null }]);
    await api.dids(
      {
        scope: 'cta',
        pattern: '*crab*',
        type: 'dataset',
        filters: ['target=Crab']
      },
      50,
      'abc'
    );
    expect(calls[0]).toEqual({
      path: 'dids',
      init: undefined,
      query: {
        scope: 'cta',
        pattern: '*crab*',
        type: 'dataset',
        filter: ['target=Crab'],
        limit: 50,
        cursor: 'abc'
      }
    });
  });

  it('defaults the pattern to * and the type to all', async () => {
    const { api, calls } = fake([{ items: [], next_cursor: null }]);
    await api.dids({ scope: 'cta' }, 10, null);
    expect(calls[0].query).toMatchObject({
      pattern: '*',
      type: 'all',
      filter: []
    });
  });

  it('asks for DID paths with the name percent-encoded', async () => {
    const { api, calls } = fake();
    await api.contents('user.x:a/b', 100, null);
    await api.replicas('cta:crab-2024.dl3');
    await api.rules('cta:crab-2024.dl3');
    await api.placement('cta:crab-2024.dl3');
    await api.details('cta:crab-2024.dl3');
    expect(calls.map(c => c.path)).toEqual([
      'dids/user.x/a%2Fb/contents',
      'dids/cta/crab-2024.dl3/replicas',
      'dids/cta/crab-2024.dl3/rules',
      'dids/cta/crab-2024.dl3/placement',
      'dids/cta/crab-2024.dl3'
    ]);
  });

  it('posts make-available with the DIDs and only the options given', async () => {
    const { api, calls } = fake();
    await api.makeAvailable(['cta:a', 'cta:b']);
    await api.makeAvailable(['cta:a'], null, 'for my analysis');
    expect(calls[0].init?.method).toBe('POST');
    expect(JSON.parse(String(calls[0].init?.body))).toEqual({
      dids: ['cta:a', 'cta:b']
    });
    expect(JSON.parse(String(calls[1].init?.body))).toEqual({
      dids: ['cta:a'],
      lifetime: null,
      comment: 'for my analysis'
    });
  });

  it('reads progress, registry, search and names where the API has them', async () => {
    const { api, calls } = fake([{ scopes: ['cta'] }]);
    expect(await api.scopes()).toEqual(['cta']);
    await api.progress('ab/cd');
    await api.registry(['gamma'], ['tap'], 10);
    await api.voSearch({ name: 'Crab', radius: 1 });
    await api.resolve('Crab');
    await api.download('cta:x');
    expect(calls.slice(1).map(c => [c.path, c.init?.method ?? 'GET'])).toEqual([
      ['rules/ab%2Fcd/progress', 'GET'],
      ['vo/registry', 'GET'],
      ['vo/search', 'POST'],
      ['vo/resolve', 'GET'],
      ['download', 'POST']
    ]);
    expect(calls[2].query).toEqual({
      keywords: ['gamma'],
      servicetype: ['tap'],
      maxrec: 10
    });
    expect(JSON.parse(String(calls[3].init?.body))).toEqual({
      name: 'Crab',
      radius: 1
    });
  });
});

describe('collectPages', () => {
  const pages: Record<string, IPage<number>> = {
    start: { items: [1, 2], next_cursor: 'c2' },
    c2: { items: [3, 4], next_cursor: 'c3' },
    c3: { items: [5], next_cursor: null }
  };

  it('follows cursors to the last page', async () => {
    const seen: Array<string | null> = [];
    const items = await collectPages(cursor => {
      seen.push(cursor);
      return Promise.resolve(pages[cursor ?? 'start']);
    });
    expect(items).toEqual([1, 2, 3, 4, 5]);
    expect(seen).toEqual([null, 'c2', 'c3']);
  });

  it('stops at max items', async () => {
    const items = await collectPages(
      cursor => Promise.resolve(pages[cursor ?? 'start']),
      3
    );
    expect(items).toEqual([1, 2, 3]);
  });

  it('stops when a server repeats a cursor', async () => {
    let reads = 0;
    const items = await collectPages(() => {
      reads += 1;
      return Promise.resolve({ items: [reads], next_cursor: 'same' });
    });
    expect(reads).toBe(2);
    expect(items).toEqual([1, 2]);
  });
});

describe('watches', () => {
  it('lists the watches and stops one by its encoded name', async () => {
    const watch = {
      name: 'spectra v2',
      instance: 'embedded-alice',
      target: 'user.alice:nightly',
      function: 'analysis.spectrum',
      state: 'running',
      counts: { existing: 3, done: 12, failed: 1, new: 2, retry: 1 },
      created: '2026-12-04T18:00:00+00:00',
      last_error: null
    };
    const { api, calls } = fake([
      { watches: [watch] },
      { ...watch, state: 'stopped' }
    ]);
    expect(await api.watches()).toEqual([watch]);
    expect(calls[0].path).toBe('watches');
    expect((await api.stopWatch('spectra v2')).state).toBe('stopped');
    expect(calls[1].path).toBe('watches/spectra%20v2/stop');
    expect(calls[1].init?.method).toBe('POST');
    expect(watchSummary(watch as IWatch)).toBe(
      '12 done · 1 failed · 3 waiting'
    );
    expect(watchSummary({ ...watch, counts: {} } as IWatch)).toBe('0 done');
  });
});
