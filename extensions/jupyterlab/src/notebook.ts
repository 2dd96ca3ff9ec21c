/**
 * Cells into notebooks: the reader cell of a DID, and DIDs attached to the notebook
 * (kept in its metadata under `escape_portal.dids`, so they travel with the .ipynb).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  INotebookTracker,
  NotebookActions,
  NotebookPanel
} from '@jupyterlab/notebook';

import {
  attachCode,
  attachedCell,
  mergeAttached,
  METADATA_KEY,
  openCell
} from './models/cells';
import { onKernelStarts } from './models/kernelstarts';

/** The active notebook, or a new one (Python kernel) when none is open. */
export async function activeNotebook(
  app: JupyterFrontEnd,
  tracker: INotebookTracker
): Promise<NotebookPanel> {
  let panel = tracker.currentWidget;
  if (!panel) {
    panel = (await app.commands.execute('notebook:create-new', {
      kernelName: 'python3'
    })) as NotebookPanel;
  }
  await panel.context.ready;
  await panel.sessionContext.ready; // its kernel chosen (and started) before cells arrive
  app.shell.activateById(panel.id);
  return panel;
}

/** Insert a code cell with `source` below the active cell and select it. */
export function insertCell(panel: NotebookPanel, source: string): void {
  const notebook = panel.content;
  const model = notebook.model;
  if (!model) {
    return;
  }
  const activeCell = notebook.activeCell;
  const onlyEmpty =
    model.cells.length === 1 &&
    activeCell !== null &&
    activeCell.model.sharedModel.getSource() === '';
  if (!onlyEmpty) {
    NotebookActions.insertBelow(notebook);
  }
  if (notebook.activeCell?.model.type !== 'code') {
    NotebookActions.changeCellType(notebook, 'code');
  }
  notebook.activeCell?.model.sharedModel.setSource(source);
  // Keyboard focus to the notebook, so that Shift+Enter runs the new cell.
  notebook.mode = 'command';
  notebook.activate();
}

/** Insert the cell opening `did` with its reader. */
export async function openInNotebook(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  did: string,
  type: string | null
): Promise<NotebookPanel> {
  const panel = await activeNotebook(app, tracker);
  insertCell(panel, openCell(did, type));
  return panel;
}

/** The DIDs attached to a notebook. */
export function attachedDIDs(panel: NotebookPanel): string[] {
  const meta = panel.content.model?.getMetadata(METADATA_KEY) as
    { dids?: unknown } | undefined;
  return mergeAttached(meta?.dids, []);
}

/** Attach `dids` to the notebook's metadata and insert a cell opening them all. */
export async function attachToNotebook(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  dids: string[]
): Promise<NotebookPanel> {
  const panel = await activeNotebook(app, tracker);
  const model = panel.content.model;
  if (model) {
    const current = (model.getMetadata(METADATA_KEY) ?? {}) as Record<
      string,
      unknown
    >;
    const merged = mergeAttached(current.dids, dids);
    model.setMetadata(METADATA_KEY, { ...current, dids: merged });
    insertCell(panel, attachedCell(merged));
  }
  return panel;
}

/**
 * Re-bind a notebook's attached DIDs whenever its kernel starts, restarts (asked for,
 * or after the kernel died) or is changed, so the variables exist without re-running
 * the cell that attached them (see `onKernelStarts`).
 */
export function rebindOnKernelStart(panel: NotebookPanel): void {
  const session = panel.sessionContext;
  const bind = (): void => {
    const kernel = session.session?.kernel;
    const dids = attachedDIDs(panel);
    if (!kernel || dids.length === 0) {
      return;
    }
    kernel.requestExecute({
      code: attachCode(dids),
      silent: true,
      store_history: false
    });
  };
  onKernelStarts(session, bind);
}
