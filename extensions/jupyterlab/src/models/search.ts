/**
 * The Data Lake search box: `scope:pattern`, `type:dataset`, and metadata filters.
 *
 *     cta:*crab* type:dataset target=Crab ra>80
 *
 * Words are separated by spaces ("double quotes" keep spaces in a word). A word with an
 * operator (`=`, `!=`, `<`, `<=`, `>`, `>=`) is a metadata filter, passed to the lake as
 * written; `type:file|dataset|container|all` sets the type; `scope:pattern` sets both
 * (the pattern takes Rucio's wildcard `*`); a lone word is the name pattern within the
 * scope being browsed.
 */
import { DIDType, IDIDSearchQuery } from './types';

const TYPES: DIDType[] = ['file', 'dataset', 'container', 'collection', 'all'];
const FILTER = /^([A-Za-z_][\w.-]*)\s*(!=|<=|>=|=|<|>)\s*(.+)$/;

/** The words of a search text (double quotes keep spaces in a word; they are removed). */
export function words(text: string): string[] {
  const found = text.match(/(?:[^\s"]+|"[^"]*")+/g) ?? [];
  return found.map(w => w.replace(/"/g, '')).filter(w => w.length > 0);
}

/** Parse a search text; `scope` is the one browsed, used when the text names none. */
export function parseSearch(text: string, scope = ''): IDIDSearchQuery {
  const query: IDIDSearchQuery = {
    scope,
    pattern: '*',
    type: 'all',
    filters: [],
    problems: []
  };
  let patterned = false;
  for (const word of words(text)) {
    const lowered = word.toLowerCase();
    if (lowered.startsWith('type:')) {
      const type = lowered.slice(5) as DIDType;
      if (TYPES.includes(type)) {
        query.type = type;
      } else {
        query.problems.push(
          `Unknown type "${word.slice(5)}": use ${TYPES.join(', ')}.`
        );
      }
      continue;
    }
    const filter = FILTER.exec(word);
    if (filter && !word.includes(':')) {
      query.filters.push(`${filter[1]}${filter[2]}${filter[3]}`);
      continue;
    }
    const colon = word.indexOf(':');
    if (colon > 0) {
      query.scope = word.slice(0, colon);
      query.pattern = word.slice(colon + 1) || '*';
    } else if (colon === 0) {
      query.pattern = word.slice(1) || '*';
    } else {
      query.pattern = patterned ? `${query.pattern} ${word}` : word;
    }
    patterned = true;
  }
  if (!query.scope) {
    query.problems.push(
      'Name a scope, e.g. cta:*crab*, or pick one to browse.'
    );
  }
  return query;
}

/** The search text that `parseSearch` reads back as `query`. */
export function formatSearch(query: IDIDSearchQuery): string {
  const parts = [`${query.scope}:${query.pattern || '*'}`];
  if (query.type !== 'all') {
    parts.push(`type:${query.type}`);
  }
  for (const f of query.filters) {
    parts.push(/\s/.test(f) ? `"${f}"` : f);
  }
  return parts.join(' ');
}
