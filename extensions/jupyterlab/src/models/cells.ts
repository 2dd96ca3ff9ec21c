/**
 * The code cells the extension inserts into notebooks: each opens a DID with the right
 * reader of `escape_portal.access`, so that the notebook runs anywhere the portal does.
 */

/** How a DID is read. */
export type ReaderKind = 'fits' | 'table' | 'paths';

const FITS = /\.(fits|fit|fts)(\.gz|\.fz)?$|\.fz$/i;
const TABLES = /\.(ecsv|csv|parquet|vot|votable|hdf5|h5)$/i;

/** The reader for a DID: FITS files as HDU lists, tables as Tables, the rest as paths. */
export function readerFor(name: string, type: string | null): ReaderKind {
  if (type === 'file' || type === null) {
    if (FITS.test(name)) {
      return 'fits';
    }
    if (TABLES.test(name)) {
      return 'table';
    }
  }
  return 'paths';
}

/** A Python identifier made from a DID's name, e.g. `crab_2024_dl3_0001`. */
export function variableName(did: string, fallback = 'data'): string {
  const name = did.includes(':') ? did.slice(did.indexOf(':') + 1) : did;
  let base = name
    .replace(/\.(fits|fit|fts)(\.gz|\.fz)?$/i, '')
    .replace(/[^A-Za-z0-9_]+/g, '_')
    .replace(/^_+|_+$/g, '')
    .toLowerCase();
  if (!base) {
    base = fallback;
  }
  if (/^[0-9]/.test(base)) {
    base = `${fallback}_${base}`;
  }
  const keywords = [
    'and',
    'as',
    'class',
    'def',
    'for',
    'from',
    'if',
    'import',
    'in',
    'is'
  ];
  if (keywords.includes(base)) {
    base = `${base}_`;
  }
  return base.length > 40 ? base.slice(0, 40).replace(/_+$/, '') : base;
}

/** A Python string literal of `text`. */
export function pyString(text: string): string {
  return JSON.stringify(text);
}

const IMPORTS = [
  'from escape_portal.access import Access',
  'from escape_portal.lake import Lake',
  ''
];

/** The cell that opens one DID with its reader. */
export function openCell(did: string, type: string | null): string {
  const name = did.slice(did.indexOf(':') + 1);
  const kind = readerFor(name, type);
  const v = variableName(did);
  const lines = [...IMPORTS, 'access = Access(Lake.from_instance())'];
  switch (kind) {
    case 'fits':
      lines.push(
        `${v} = access.fits(${pyString(did)})  # astropy HDUList (lazy, memory-mapped)`,
        `${v}.info()`
      );
      break;
    case 'table':
      lines.push(`${v} = access.table(${pyString(did)})  # astropy Table`, v);
      break;
    default:
      lines.push(
        `${v}_paths = access.paths(${pyString(did)})  # local files: mounted, cached or downloaded`,
        `print(len(${v}_paths), "files, e.g.", ${v}_paths[:3])`
      );
  }
  return lines.join('\n');
}

/** The cell that opens the DIDs attached to the notebook (in its metadata). */
export function attachedCell(dids: string[]): string {
  return [
    '# Data attached to this notebook (metadata "escape_portal.dids"): each name is bound',
    '# to local paths, again whenever the kernel starts, and when data arrives near compute.',
    attachCode(dids),
    'attached'
  ].join('\n');
}

/** `{variable: DID}` for attached DIDs (names made unique with a suffix). */
export function attachedNames(dids: string[]): Record<string, string> {
  const names: Record<string, string> = {};
  for (const did of dids) {
    const base = variableName(did);
    let name = base;
    for (let i = 2; name in names; i++) {
      name = `${base}_${i}`;
    }
    names[name] = did;
  }
  return names;
}

/** The code that binds attached DIDs in the kernel (`escape_portal.kernel.attach_all`). */
export function attachCode(dids: string[]): string {
  const pairs = Object.entries(attachedNames(dids))
    .map(([name, did]) => `    ${pyString(name)}: ${pyString(did)},`)
    .join('\n');
  return [
    'from escape_portal.kernel import attach_all',
    '',
    `attached = attach_all({\n${pairs}\n})`
  ].join('\n');
}

/** Notebook metadata key under which attached DIDs are kept. */
export const METADATA_KEY = 'escape_portal';

/** The attached DIDs after adding `added` to `current` (order kept, no repeats). */
export function mergeAttached(current: unknown, added: string[]): string[] {
  const list = Array.isArray(current)
    ? current.filter((d): d is string => typeof d === 'string')
    : [];
  for (const did of added) {
    if (!list.includes(did)) {
      list.push(did);
    }
  }
  return list;
}
