/** The panels' icons (inline SVG: nothing is fetched at run time). */
import { LabIcon } from '@jupyterlab/ui-components';

const lakeSvg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <ellipse cx="12" cy="5" rx="8" ry="3"/>
    <path d="M4 7v4c0 1.7 3.6 3 8 3s8-1.3 8-3V7c0 1.7-3.6 3-8 3S4 8.7 4 7z"/>
    <path d="M4 13v4c0 1.7 3.6 3 8 3s8-1.3 8-3v-4c0 1.7-3.6 3-8 3s-8-1.3-8-3z"/>
  </g>
</svg>`;

const skySvg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 2a8 8 0 1 1 0 16 8 8 0 0 1 0-16z"/>
    <circle cx="9" cy="9" r="1.5"/><circle cx="15" cy="11" r="1"/><circle cx="11" cy="15.5" r="1.2"/>
    <path d="M12 6l.9 2.1L15 9l-2.1.9L12 12l-.9-2.1L9 9l2.1-.9z" opacity=".0"/>
  </g>
</svg>`;

export const lakeIcon = new LabIcon({
  name: 'escape-portal:lake',
  svgstr: lakeSvg
});
export const skyIcon = new LabIcon({
  name: 'escape-portal:sky',
  svgstr: skySvg
});
