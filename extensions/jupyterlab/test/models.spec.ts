import {
  attachedCell,
  mergeAttached,
  openCell,
  readerFor,
  variableName
} from '../src/models/cells';
import {
  formatBytes,
  formatDuration,
  formatPercent
} from '../src/models/format';
import { formatSearch, parseSearch, words } from '../src/models/search';
import {
  footprintsOf,
  layoutSky,
  meanPosition,
  niceStep,
  project
} from '../src/models/sky';
import { buildVOQuery } from '../src/models/voquery';

describe('search box', () => {
  it('reads scope, pattern, type and filters', () => {
    expect(parseSearch('cta:*crab* type:dataset target=Crab ra>80')).toEqual({
      scope: 'cta',
      pattern: '*crab*',
      type: 'dataset',
      filters: ['target=Crab', 'ra>80'],
      problems: []
    });
  });

  it('uses the scope browsed when the text names none', () => {
    expect(parseSearch('*dl3*', 'cta')).toMatchObject({
      scope: 'cta',
      pattern: '*dl3*'
    });
    expect(parseSearch('type:file', 'ska')).toMatchObject({
      scope: 'ska',
      pattern: '*',
      type: 'file'
    });
  });

  it('keeps quoted values with spaces together', () => {
    expect(words('cta:* "target=Crab Nebula" a')).toEqual([
      'cta:*',
      'target=Crab Nebula',
      'a'
    ]);
    expect(words('target="Crab Nebula"')).toEqual(['target=Crab Nebula']);
    expect(parseSearch('cta:* target="Crab Nebula"').filters).toEqual([
      'target=Crab Nebula'
    ]);
  });

  it('reads every comparison', () => {
    expect(parseSearch('x:* a!=1 b<=2 c>=3 d<4').filters).toEqual([
      'a!=1',
      'b<=2',
      'c>=3',
      'd<4'
    ]);
  });

  it('says what it did not understand', () => {
    expect(parseSearch('type:folder').problems).toEqual([
      'Unknown type "folder": use file, dataset, container, collection, all.',
      'Name a scope, e.g. cta:*crab*, or pick one to browse.'
    ]);
  });

  it('writes back what it reads', () => {
    const query = parseSearch('cta:*crab* type:dataset "target=Crab Nebula"');
    expect(parseSearch(formatSearch(query))).toEqual(query);
  });
});

describe('notebook cells', () => {
  it('opens FITS files as HDU lists, tables as Tables, the rest as paths', () => {
    expect(readerFor('crab.0001.fits', 'file')).toBe('fits');
    expect(readerFor('img.fits.fz', 'file')).toBe('fits');
    expect(readerFor('cat.ecsv', 'file')).toBe('table');
    expect(readerFor('run.dat', 'file')).toBe('paths');
    expect(readerFor('crab-2024.dl3', 'dataset')).toBe('paths');
  });

  it('writes a cell that runs with escape_portal.access', () => {
    const code = openCell('cta:crab-2024.dl3.0001.fits', 'file');
    expect(code).toContain('from escape_portal.access import Access');
    expect(code).toContain('from escape_portal.lake import Lake');
    expect(code).toContain(
      'crab_2024_dl3_0001 = access.fits("cta:crab-2024.dl3.0001.fits")'
    );
    expect(openCell('cta:crab-2024.dl3', 'dataset')).toContain(
      'crab_2024_dl3_paths = access.paths("cta:crab-2024.dl3")'
    );
    expect(openCell('ska:cat.ecsv', 'file')).toContain(
      'access.table("ska:cat.ecsv")'
    );
  });

  it('makes valid Python names', () => {
    expect(variableName('scale:files-100k')).toBe('files_100k');
    expect(variableName('x:2024.fits')).toBe('data_2024');
    expect(variableName('x:...')).toBe('data');
    expect(variableName('x:in')).toBe('in_');
  });

  it('quotes DIDs safely', () => {
    expect(openCell('u:a"b.fits', 'file')).toContain(
      'access.fits("u:a\\"b.fits")'
    );
  });

  it('keeps attached DIDs once each, in order', () => {
    expect(mergeAttached(['a:1', 7, 'b:2'], ['b:2', 'c:3'])).toEqual([
      'a:1',
      'b:2',
      'c:3'
    ]);
    expect(mergeAttached(undefined, ['a:1'])).toEqual(['a:1']);
    const cell = attachedCell(['cta:run.fits', 'lofar:run.fits', 'x:1']);
    expect(cell).toContain('from escape_portal.kernel import attach_all');
    // names from the DIDs, made unique; the DIDs themselves as string literals
    expect(cell).toContain(
      '"run": "cta:run.fits",\n    "run_2": "lofar:run.fits",'
    );
    expect(cell).toContain('"data_1": "x:1",');
  });
});

describe('formats', () => {
  it('formats bytes, durations and fractions', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(253440)).toBe('253 kB');
    expect(formatBytes(4_500_000)).toBe('4.50 MB');
    expect(formatBytes(null)).toBe('—');
    expect(formatDuration(42)).toBe('42 s');
    expect(formatDuration(185)).toBe('3 min 5 s');
    expect(formatDuration(7800)).toBe('2 h 10 min');
    expect(formatDuration(90000)).toBe('1 d 1 h');
    expect(formatPercent(0.999)).toBe('99 %');
    expect(formatPercent(2)).toBe('100 %');
  });
});

describe('sky footprint', () => {
  it('averages RA across 0°', () => {
    const m = meanPosition([
      { ra: 359, dec: 0 },
      { ra: 1, dec: 0 }
    ]);
    expect(Math.min(m.ra, 360 - m.ra)).toBeCloseTo(0, 6);
    expect(m.dec).toBeCloseTo(0, 6);
  });

  it('projects with east positive and hides the far side', () => {
    const c = { ra: 83.63, dec: 22.01 };
    expect(project(c, c)).toEqual({ x: 0, y: 0 });
    const east = project({ ra: 84.63, dec: 22.01 }, c)!;
    expect(east.x).toBeGreaterThan(0.9);
    expect(east.x).toBeLessThan(1);
    expect(project({ ra: 263.63, dec: -22.01 }, c)).toBeNull();
  });

  it('draws east to the left, north up, with radii from s_fov', () => {
    const rows = [
      { s_ra: 83.63, s_dec: 22.01, s_fov: 1, lake_did: 'cta:a' },
      { s_ra: 84.63, s_dec: 22.01, s_fov: 0.5, lake_did: '' },
      { s_ra: 83.63, s_dec: 23.01, s_fov: null },
      { s_ra: null, s_dec: null }
    ];
    const layout = layoutSky(footprintsOf(rows), 200, {
      centre: { ra: 83.63, dec: 22.01 },
      radius: 2
    });
    const [centre, east, north] = layout.shapes;
    expect(centre.cx).toBeCloseTo(100, 0);
    expect(east.cx).toBeLessThan(centre.cx);
    expect(north.cy).toBeLessThan(centre.cy);
    expect(centre.r).toBeGreaterThan(east.r);
    expect(north.r).toBe(2.5); // unknown field of view: a dot
    expect(centre.linked).toBe(true);
    expect(east.linked).toBe(false);
    expect(layout.hidden).toBe(1);
    expect(layout.cone?.r).toBeGreaterThan(0);
    expect(layout.graticule.length).toBeGreaterThan(2);
    for (const s of layout.shapes) {
      expect(s.cx).toBeGreaterThanOrEqual(0);
      expect(s.cx).toBeLessThanOrEqual(200);
    }
  });

  it('chooses round grid steps', () => {
    expect(niceStep(4)).toBe(1);
    expect(niceStep(0.3)).toBe(0.1);
    expect(niceStep(100)).toBe(30);
  });
});

describe('VO query', () => {
  const base = {
    name: '',
    ra: '',
    dec: '',
    radius: '1',
    start: '',
    end: '',
    bandMin: '',
    bandMax: '',
    collection: '',
    product: '',
    maxrec: 100,
    timeout: 10,
    services: []
  };

  it('sends a name, or a position, with the other constraints', () => {
    expect(buildVOQuery({ ...base, name: 'Crab', product: 'image' })).toEqual({
      query: {
        name: 'Crab',
        radius: 1,
        dataproduct_type: 'image',
        maxrec: 100,
        timeout: 10
      },
      problems: []
    });
    const { query } = buildVOQuery({
      ...base,
      ra: '-10',
      dec: '22',
      start: '2024-01-01',
      end: '2024-02-01',
      bandMin: '1e-7',
      bandMax: '1e-6',
      collection: 'CTA',
      services: [
        { name: 'lake', kind: 'tap', url: 'http://x/tap', title: 'The lake' }
      ]
    });
    expect(query).toMatchObject({
      pos: [350, 22],
      time: ['2024-01-01', '2024-02-01'],
      band: [1e-7, 1e-6],
      collection: 'CTA',
      services: [{ name: 'lake', kind: 'tap', url: 'http://x/tap' }]
    });
  });

  it('says what is wrong before asking', () => {
    expect(buildVOQuery({ ...base, ra: '10' }).problems).toEqual([
      'Give both RA and Dec in degrees, or a name to resolve.'
    ]);
    expect(
      buildVOQuery({
        ...base,
        radius: '0',
        start: '2024-01-01',
        bandMin: '2',
        bandMax: '1'
      }).problems
    ).toHaveLength(3);
  });
});
