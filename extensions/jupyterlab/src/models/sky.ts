/**
 * The sky footprint of VO results: each row's field of view (s_ra, s_dec, s_fov) as a
 * circle on an orthographic (SIN) projection centred on the results, east to the left,
 * with a graticule. Pure geometry: the component only draws what this computes.
 */

const RAD = Math.PI / 180;

/** A point on the sky, in degrees. */
export interface ISkyPoint {
  ra: number;
  dec: number;
}

/** A footprint to draw. */
export interface IFootprintInput extends ISkyPoint {
  /** Diameter of the field of view in degrees (`s_fov`); small when unknown. */
  fov: number | null;
  /** Row index in the results. */
  index: number;
  linked: boolean;
}

export interface IFootprintShape {
  index: number;
  linked: boolean;
  cx: number;
  cy: number;
  r: number;
}

export interface ISkyLayout {
  size: number;
  centre: ISkyPoint;
  /** Degrees from the centre to the edge of the plot. */
  extent: number;
  shapes: IFootprintShape[];
  /** Graticule lines as SVG polyline point lists, with a label each. */
  graticule: Array<{ points: string; label: string; lx: number; ly: number }>;
  /** The search cone, if one was given. */
  cone: { cx: number; cy: number; r: number } | null;
  /** Rows that could not be drawn (no position, or on the far side of the sky). */
  hidden: number;
}

/** Mean position of points, averaging RA on the circle (0° and 359° give 359.5°). */
export function meanPosition(points: ISkyPoint[]): ISkyPoint {
  if (!points.length) {
    return { ra: 0, dec: 0 };
  }
  let x = 0;
  let y = 0;
  let z = 0;
  for (const p of points) {
    x += Math.cos(p.dec * RAD) * Math.cos(p.ra * RAD);
    y += Math.cos(p.dec * RAD) * Math.sin(p.ra * RAD);
    z += Math.sin(p.dec * RAD);
  }
  const ra = (Math.atan2(y, x) / RAD + 360) % 360;
  const dec = Math.atan2(z, Math.hypot(x, y)) / RAD;
  return { ra, dec };
}

/**
 * Orthographic projection of `p` about `centre`, in degrees on the tangent plane:
 * x grows to the east (which is drawn to the left), y to the north; `null` on the far side.
 */
export function project(
  p: ISkyPoint,
  centre: ISkyPoint
): { x: number; y: number } | null {
  const d = p.dec * RAD;
  const d0 = centre.dec * RAD;
  const da = (p.ra - centre.ra) * RAD;
  const cosc =
    Math.sin(d0) * Math.sin(d) + Math.cos(d0) * Math.cos(d) * Math.cos(da);
  if (cosc < 0) {
    return null;
  }
  const x = Math.cos(d) * Math.sin(da);
  const y =
    Math.cos(d0) * Math.sin(d) - Math.sin(d0) * Math.cos(d) * Math.cos(da);
  return { x: x / RAD, y: y / RAD };
}

/** A round step (1, 2, 5 × 10ⁿ degrees, or 15°/30°) giving about `count` lines over `span`. */
export function niceStep(span: number, count = 4): number {
  const raw = Math.max(span / count, 1e-6);
  const steps = [1, 2, 5, 10];
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const s of steps) {
    if (s * power >= raw) {
      const step = s * power;
      if (step > 10) {
        return step > 15 ? 30 : 15;
      }
      return step;
    }
  }
  return 10 * power;
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}

function formatDeg(v: number, step: number): string {
  const decimals = step >= 1 ? 0 : Math.min(4, Math.ceil(-Math.log10(step)));
  return `${v.toFixed(decimals)}°`;
}

/** Lay out footprints in a `size` × `size` plot. */
export function layoutSky(
  inputs: IFootprintInput[],
  size = 280,
  search: { centre: ISkyPoint; radius: number | null } | null = null
): ISkyLayout {
  const placed = inputs.filter(
    p => Number.isFinite(p.ra) && Number.isFinite(p.dec)
  );
  const centre = search?.centre ?? meanPosition(placed);
  const projected: Array<{
    p: IFootprintInput;
    x: number;
    y: number;
    r: number;
  }> = [];
  let hidden = inputs.length - placed.length;
  for (const p of placed) {
    const xy = project(p, centre);
    if (!xy) {
      hidden += 1;
      continue;
    }
    const r = p.fov && p.fov > 0 ? p.fov / 2 : 0;
    projected.push({ p, x: xy.x, y: xy.y, r });
  }
  let extent = search?.radius ?? 0;
  for (const q of projected) {
    extent = Math.max(extent, Math.abs(q.x) + q.r, Math.abs(q.y) + q.r);
  }
  extent = Math.min(90, extent > 0 ? extent * 1.15 : 1);
  const half = size / 2;
  const scale = (half - 8) / extent;
  const toSvg = (x: number, y: number): [number, number] => [
    round(half - x * scale),
    round(half - y * scale)
  ];
  const shapes = projected.map(q => {
    const [cx, cy] = toSvg(q.x, q.y);
    return {
      index: q.p.index,
      linked: q.p.linked,
      cx,
      cy,
      r: round(Math.max(2.5, q.r * scale))
    };
  });

  // Graticule: Dec parallels and RA meridians crossing the plot.
  const graticule: ISkyLayout['graticule'] = [];
  const step = niceStep(2 * extent);
  const raStep = niceStep(
    (2 * extent) / Math.max(0.1, Math.cos(centre.dec * RAD))
  );
  const line = (pts: ISkyPoint[]): string =>
    pts
      .map(p => project(p, centre))
      .filter((xy): xy is { x: number; y: number } => xy !== null)
      .map(xy => toSvg(xy.x, xy.y).join(','))
      .join(' ');
  const decLow = Math.max(-90, centre.dec - extent * 1.5);
  const decHigh = Math.min(90, centre.dec + extent * 1.5);
  const raSpan = Math.min(
    180,
    (extent * 1.5) / Math.max(0.05, Math.cos(centre.dec * RAD))
  );
  for (let dec = Math.ceil(decLow / step) * step; dec <= decHigh; dec += step) {
    const pts: ISkyPoint[] = [];
    for (let i = 0; i <= 40; i++) {
      pts.push({ ra: centre.ra - raSpan + (2 * raSpan * i) / 40, dec });
    }
    const xy = project({ ra: centre.ra, dec }, centre);
    if (xy) {
      const [, ly] = toSvg(0, xy.y);
      graticule.push({
        points: line(pts),
        label: formatDeg(dec, step),
        lx: 2,
        ly
      });
    }
  }
  const raStart = Math.ceil((centre.ra - raSpan) / raStep) * raStep;
  for (let ra = raStart; ra <= centre.ra + raSpan; ra += raStep) {
    const pts: ISkyPoint[] = [];
    for (let i = 0; i <= 40; i++) {
      pts.push({ ra, dec: decLow + ((decHigh - decLow) * i) / 40 });
    }
    const xy = project({ ra, dec: centre.dec }, centre);
    if (xy) {
      const [lx] = toSvg(xy.x, 0);
      graticule.push({
        points: line(pts),
        label: formatDeg(((ra % 360) + 360) % 360, raStep),
        lx,
        ly: size - 2
      });
    }
  }

  let cone: ISkyLayout['cone'] = null;
  if (search && search.radius) {
    cone = { cx: half, cy: half, r: round(search.radius * scale) };
  }
  return { size, centre, extent, shapes, graticule, cone, hidden };
}

/** Footprint inputs from result rows with ObsCore columns. */
export function footprintsOf(
  rows: Array<Record<string, unknown>>
): IFootprintInput[] {
  const num = (v: unknown): number =>
    typeof v === 'number'
      ? v
      : typeof v === 'string' && v !== ''
        ? Number(v)
        : NaN;
  return rows.map((row, index) => {
    const fov = num(row.s_fov);
    return {
      index,
      ra: num(row.s_ra),
      dec: num(row.s_dec),
      fov: Number.isFinite(fov) ? fov : null,
      linked: typeof row.lake_did === 'string' && row.lake_did !== ''
    };
  });
}
