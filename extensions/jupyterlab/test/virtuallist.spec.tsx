import * as React from 'react';
import { act } from 'react';
import { createRoot, Root } from 'react-dom/client';

import { VirtualList } from '../src/components/VirtualList';

// React's act() needs to know it runs in a test.
(
  globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }
).IS_REACT_ACT_ENVIRONMENT = true;

describe('VirtualList', () => {
  let host: HTMLDivElement;
  let root: Root;

  beforeEach(() => {
    host = document.createElement('div');
    document.body.appendChild(host);
    root = createRoot(host);
  });

  afterEach(() => {
    act(() => root.unmount());
    host.remove();
  });

  function list(): HTMLElement {
    return host.querySelector('.ep-VirtualList') as HTMLElement;
  }

  it('puts only the rows in view in the DOM, for 100,000 rows', () => {
    const ends: number[] = [];
    act(() =>
      root.render(
        <VirtualList
          id="t"
          label="files"
          count={100_000}
          rowHeight={20}
          renderRow={i => <span className="cell">{`file ${i}`}</span>}
          onVisibleEnd={last => ends.push(last)}
        />
      )
    );
    const rows = host.querySelectorAll('.ep-VirtualList-row');
    expect(rows.length).toBeLessThan(40);
    expect(rows[0].textContent).toBe('file 0');
    const spacer = host.querySelector('.ep-VirtualList-spacer') as HTMLElement;
    expect(spacer.style.height).toBe('2000000px');
    expect(ends[ends.length - 1]).toBe(15); // 300 px of view / 20 px rows

    // Scrolled far down: the rows there, and no others.
    act(() => {
      list().scrollTop = 1_000_000;
      list().dispatchEvent(new Event('scroll', { bubbles: true }));
    });
    const texts = [...host.querySelectorAll('.cell')].map(n => n.textContent);
    expect(texts).toContain('file 50000');
    expect(texts).not.toContain('file 0');
    expect(ends[ends.length - 1]).toBe(50015);
  });

  it('is driven by the keyboard', () => {
    const activated: number[] = [];
    const toggled: number[] = [];
    const focused: number[] = [];
    act(() =>
      root.render(
        <VirtualList
          id="k"
          label="files"
          count={10}
          rowHeight={20}
          renderRow={i => `row ${i}`}
          onActivate={i => activated.push(i)}
          onToggle={i => toggled.push(i)}
          onFocusRow={i => focused.push(i)}
        />
      )
    );
    const key = (k: string) =>
      act(() => {
        list().dispatchEvent(
          new KeyboardEvent('keydown', { key: k, bubbles: true })
        );
      });
    expect(list().getAttribute('role')).toBe('listbox');
    key('ArrowDown');
    key('ArrowDown');
    key(' ');
    key('Enter');
    key('End');
    key('ArrowDown'); // stays on the last row
    key('Home');
    expect(focused).toEqual([1, 2, 9, 9, 0]);
    expect(toggled).toEqual([2]);
    expect(activated).toEqual([2]);
    expect(list().getAttribute('aria-activedescendant')).toBe('k-row-0');
  });
});
