/** Numbers as people read them. */
import { IWatch } from '../tokens';

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];

/** Bytes in decimal units (1 kB = 1000 B), e.g. `1.5 GB`; `—` when unknown. */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) {
    return '—';
  }
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1000 && unit < UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/** Seconds as `45 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return '—';
  }
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s} s`;
  }
  if (s < 3600) {
    const rest = s % 60;
    return `${Math.floor(s / 60)} min${rest ? ` ${rest} s` : ''}`;
  }
  if (s < 86400) {
    const rest = Math.floor((s % 3600) / 60);
    return `${Math.floor(s / 3600)} h${rest ? ` ${rest} min` : ''}`;
  }
  const rest = Math.floor((s % 86400) / 3600);
  return `${Math.floor(s / 86400)} d${rest ? ` ${rest} h` : ''}`;
}

/** A fraction as a whole percentage, `0 %` to `100 %`. */
export function formatPercent(fraction: number): string {
  const clamped = Math.min(
    1,
    Math.max(0, Number.isFinite(fraction) ? fraction : 0)
  );
  return `${Math.floor(clamped * 100)} %`;
}

/** A count with thousands separators. */
export function formatCount(n: number | null | undefined): string {
  return n === null || n === undefined ? '—' : n.toLocaleString('en-US');
}

/** What a watch did, in words: `12 done · 1 failed · 3 waiting`. */
export function watchSummary(watch: IWatch): string {
  const c = watch.counts;
  const waiting = (c.new ?? 0) + (c.running ?? 0) + (c.retry ?? 0);
  const parts = [`${c.done ?? 0} done`];
  if (c.failed) {
    parts.push(`${c.failed} failed`);
  }
  if (waiting) {
    parts.push(`${waiting} waiting`);
  }
  return parts.join(' · ');
}
