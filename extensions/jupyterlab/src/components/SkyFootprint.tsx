/** The sky footprint of VO results: field-of-view circles on an orthographic projection. */
import * as React from 'react';

import { footprintsOf, layoutSky } from '../models/sky';
import { VORow } from '../tokens';

export function SkyFootprint(props: {
  rows: VORow[];
  position: { ra: number; dec: number } | null;
  radius: number | null;
  selected: number | null;
  onSelect: (index: number) => void;
  size?: number;
}): JSX.Element {
  const size = props.size ?? 280;
  const layout = React.useMemo(
    () =>
      layoutSky(
        footprintsOf(props.rows),
        size,
        props.position ? { centre: props.position, radius: props.radius } : null
      ),
    [props.rows, props.position, props.radius, size]
  );
  const c = layout.centre;
  return (
    <figure className="ep-Sky">
      <svg
        className="ep-Sky-plot"
        width={size}
        height={size}
        viewBox={`0 0 ${size} ${size}`}
        role="img"
        aria-label={`Sky footprint of ${layout.shapes.length} results around RA ${c.ra.toFixed(3)}°, Dec ${c.dec.toFixed(3)}°`}
      >
        <rect
          className="ep-Sky-background"
          x={0}
          y={0}
          width={size}
          height={size}
        />
        {layout.graticule.map((g, i) => (
          <g key={i} className="ep-Sky-grid">
            <polyline points={g.points} />
            <text x={g.lx} y={g.ly}>
              {g.label}
            </text>
          </g>
        ))}
        {layout.cone && (
          <circle
            className="ep-Sky-cone"
            cx={layout.cone.cx}
            cy={layout.cone.cy}
            r={layout.cone.r}
          />
        )}
        {/* the largest below, so that every footprint can be pointed at */}
        {[...layout.shapes]
          .sort((a, b) => b.r - a.r)
          .map(s => (
            <circle
              key={s.index}
              className={`ep-Sky-footprint${s.linked ? ' ep-mod-linked' : ''}${s.index === props.selected ? ' ep-mod-selected' : ''}`}
              cx={s.cx}
              cy={s.cy}
              r={s.r}
              data-row={s.index}
              onClick={() => props.onSelect(s.index)}
            >
              <title>
                {String(props.rows[s.index]?.obs_id ?? `row ${s.index + 1}`)}
              </title>
            </circle>
          ))}
        <line
          className="ep-Sky-centre"
          x1={size / 2 - 5}
          y1={size / 2}
          x2={size / 2 + 5}
          y2={size / 2}
        />
        <line
          className="ep-Sky-centre"
          x1={size / 2}
          y1={size / 2 - 5}
          x2={size / 2}
          y2={size / 2 + 5}
        />
      </svg>
      <figcaption className="ep-Muted">
        Centre RA {c.ra.toFixed(3)}°, Dec {c.dec.toFixed(3)}° · field ±
        {layout.extent.toFixed(2)}° · east left ·{' '}
        <span className="ep-Sky-key ep-mod-linked">■</span> in the lake
        {layout.hidden ? ` · ${layout.hidden} without position` : ''}
      </figcaption>
    </figure>
  );
}
