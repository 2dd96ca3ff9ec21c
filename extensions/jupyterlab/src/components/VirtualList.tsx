/**
 * A windowed list: only the rows in view (plus a few) are in the DOM, so a listing of
 * 100,000 files scrolls as smoothly as one of ten. Rows have one fixed height. Keyboard:
 * arrows, Page Up/Down, Home/End move; Enter opens; Space toggles the selection.
 */
import * as React from 'react';

export interface IVirtualListProps {
  /** Rows known so far. */
  count: number;
  rowHeight: number;
  /** Draws row `index`; `active` is the keyboard cursor. */
  renderRow: (index: number, active: boolean) => React.ReactNode;
  /** Called with the last row index in view whenever it changes (to load more). */
  onVisibleEnd?: (lastVisible: number) => void;
  onActivate?: (index: number) => void;
  onToggle?: (index: number) => void;
  onFocusRow?: (index: number) => void;
  /** Accessible name of the list. */
  label: string;
  /** Rows drawn beyond those in view on each side. */
  overscan?: number;
  /** Shown under the rows (e.g. "loading more…"). */
  footer?: React.ReactNode;
  id?: string;
}

export function VirtualList(props: IVirtualListProps): JSX.Element {
  const { count, rowHeight, overscan = 8 } = props;
  const ref = React.useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = React.useState(0);
  const [height, setHeight] = React.useState(300);
  const [active, setActive] = React.useState(0);

  React.useEffect(() => {
    const node = ref.current;
    if (!node) {
      return;
    }
    const measure = () => setHeight(node.clientHeight || 300);
    measure();
    if (typeof ResizeObserver === 'undefined') {
      return;
    }
    const observer = new ResizeObserver(measure);
    observer.observe(node);
    return () => observer.disconnect();
  }, []);

  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const inView = Math.ceil(height / rowHeight);
  const last = Math.min(
    count - 1,
    Math.floor(scrollTop / rowHeight) + inView + overscan
  );
  const lastVisible = Math.min(
    count - 1,
    Math.floor((scrollTop + height) / rowHeight)
  );

  const { onVisibleEnd } = props;
  React.useEffect(() => {
    onVisibleEnd?.(lastVisible);
  }, [lastVisible, count, onVisibleEnd]);

  React.useEffect(() => {
    if (active > count - 1) {
      setActive(Math.max(0, count - 1));
    }
  }, [count, active]);

  const moveTo = (index: number) => {
    const target = Math.max(0, Math.min(count - 1, index));
    setActive(target);
    props.onFocusRow?.(target);
    const node = ref.current;
    if (node) {
      const top = target * rowHeight;
      if (top < node.scrollTop) {
        node.scrollTop = top;
      } else if (top + rowHeight > node.scrollTop + node.clientHeight) {
        node.scrollTop = top + rowHeight - node.clientHeight;
      }
    }
  };

  const onKeyDown = (event: React.KeyboardEvent) => {
    if (!count) {
      return;
    }
    const page = Math.max(1, inView - 1);
    switch (event.key) {
      case 'ArrowDown':
        moveTo(active + 1);
        break;
      case 'ArrowUp':
        moveTo(active - 1);
        break;
      case 'PageDown':
        moveTo(active + page);
        break;
      case 'PageUp':
        moveTo(active - page);
        break;
      case 'Home':
        moveTo(0);
        break;
      case 'End':
        moveTo(count - 1);
        break;
      case 'Enter':
        props.onActivate?.(active);
        break;
      case ' ':
        props.onToggle?.(active);
        break;
      default:
        return;
    }
    event.preventDefault();
    event.stopPropagation();
  };

  const rows: React.ReactNode[] = [];
  for (let i = first; i <= last; i++) {
    rows.push(
      <div
        key={i}
        id={props.id ? `${props.id}-row-${i}` : undefined}
        role="option"
        aria-selected={i === active}
        className={`ep-VirtualList-row${i === active ? ' ep-mod-active' : ''}`}
        style={{
          position: 'absolute',
          top: i * rowHeight,
          height: rowHeight,
          left: 0,
          right: 0
        }}
        onClick={() => {
          setActive(i);
          props.onFocusRow?.(i);
        }}
        onDoubleClick={() => props.onActivate?.(i)}
      >
        {props.renderRow(i, i === active)}
      </div>
    );
  }

  return (
    <div
      ref={ref}
      id={props.id}
      className="ep-VirtualList"
      role="listbox"
      aria-label={props.label}
      aria-multiselectable={props.onToggle ? true : undefined}
      aria-activedescendant={
        props.id && count ? `${props.id}-row-${active}` : undefined
      }
      tabIndex={0}
      onKeyDown={onKeyDown}
      onScroll={event =>
        setScrollTop((event.target as HTMLDivElement).scrollTop)
      }
    >
      <div
        className="ep-VirtualList-spacer"
        style={{ height: count * rowHeight, position: 'relative' }}
      >
        {rows}
      </div>
      {props.footer}
    </div>
  );
}
