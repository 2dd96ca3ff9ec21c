/** The VO Search form as the query the API takes, with what keeps it from being sent. */
import { IVOQuery, IVOService } from '../tokens';

/** A number typed in a field (`undefined` when empty or not a number). */
export function num(text: string): number | undefined {
  if (text.trim() === '') {
    return undefined;
  }
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

/** The query of the form, with the problems that keep it from being sent. */
export function buildVOQuery(form: {
  name: string;
  ra: string;
  dec: string;
  radius: string;
  start: string;
  end: string;
  bandMin: string;
  bandMax: string;
  collection: string;
  product: string;
  maxrec: number;
  timeout: number;
  services: IVOService[];
}): { query: IVOQuery; problems: string[] } {
  const query: IVOQuery = { maxrec: form.maxrec, timeout: form.timeout };
  const problems: string[] = [];
  const ra = num(form.ra);
  const dec = num(form.dec);
  if (form.name.trim()) {
    query.name = form.name.trim();
  } else if (ra !== undefined && dec !== undefined) {
    if (dec < -90 || dec > 90) {
      problems.push('Dec must be between −90° and 90°.');
    }
    query.pos = [((ra % 360) + 360) % 360, dec];
  } else if (form.ra.trim() || form.dec.trim()) {
    problems.push('Give both RA and Dec in degrees, or a name to resolve.');
  }
  const radius = num(form.radius);
  if (radius !== undefined) {
    if (radius <= 0 || radius > 180) {
      problems.push('The radius must be between 0 and 180 degrees.');
    }
    query.radius = radius;
  }
  if (form.start || form.end) {
    if (!form.start || !form.end) {
      problems.push('Give both ends of the time range.');
    } else {
      query.time = [form.start, form.end];
    }
  }
  const lo = num(form.bandMin);
  const hi = num(form.bandMax);
  if (lo !== undefined || hi !== undefined) {
    if (lo === undefined || hi === undefined || lo > hi) {
      problems.push(
        'The band needs a minimum and a maximum wavelength (m), minimum first.'
      );
    } else {
      query.band = [lo, hi];
    }
  }
  if (form.collection.trim()) {
    query.collection = form.collection.trim();
  }
  if (form.product) {
    query.dataproduct_type = form.product;
  }
  if (form.services.length) {
    query.services = form.services.map(s => ({
      name: s.name,
      kind: s.kind,
      url: s.url
    }));
  }
  return { query, problems };
}
