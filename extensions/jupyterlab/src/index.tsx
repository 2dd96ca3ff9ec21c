/**
 * ESCAPE Portal for JupyterLab: the Data Lake and VO Search side panels, their commands,
 * and their settings. Everything goes through the server extension's REST API.
 */
import * as React from 'react';
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  InputDialog,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ReactWidget } from '@jupyterlab/ui-components';

import { PortalAPI } from './api';
import { PlacementView } from './components/PlacementView';
import { IPortalContext } from './context';
import { formatBytes } from './models/format';
import { TransfersModel } from './models/transfers';
import * as nb from './notebook';
import { userMessage } from './request';
import {
  CommandIDs,
  DEFAULT_SETTINGS,
  IPortalSettings,
  PLUGIN_ID
} from './tokens';
import { DataLakeWidget, VOSearchWidget } from './widgets';

const CATEGORY = 'ESCAPE Portal';

function readSettings(settings: ISettingRegistry.ISettings): IPortalSettings {
  const c = settings.composite as Partial<IPortalSettings>;
  return { ...DEFAULT_SETTINGS, ...c };
}

/** The DIDs a command was given (`did` or `dids`), or asked for. */
async function didsOf(
  args: Record<string, unknown>,
  title: string
): Promise<string[]> {
  if (Array.isArray(args.dids)) {
    return args.dids.filter((d): d is string => typeof d === 'string');
  }
  if (typeof args.did === 'string' && args.did) {
    return [args.did];
  }
  const answer = await InputDialog.getText({
    title,
    label: 'Data identifier(s), scope:name, separated by spaces',
    placeholder: 'cta:crab-2024.dl3'
  });
  return answer.button.accept && answer.value
    ? answer.value.split(/[\s,]+/).filter(Boolean)
    : [];
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: `${PLUGIN_ID}:plugin`,
  description: 'Data Lake and VO Search panels of the ESCAPE Portal.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ISettingRegistry, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    restorer: ILayoutRestorer | null
  ) => {
    let settings: IPortalSettings = { ...DEFAULT_SETTINGS };
    const api = new PortalAPI();
    // Attached DIDs are bound in the kernel whenever a notebook's kernel (re)starts.
    notebooks.widgetAdded.connect((_, panel) => nb.rebindOnKernelStart(panel));
    const transfers = new TransfersModel({
      read: ruleId => api.progress(ruleId),
      intervalSeconds: () => settings.progressPollSeconds,
      onAvailable: t => {
        if (settings.notifyWhenAvailable) {
          Notification.success(
            `${t.did} is available near compute${t.destination ? ` at ${t.destination}` : ''}.`,
            { autoClose: 8000 }
          );
        }
      },
      onStuck: t => {
        Notification.warning(
          `Bringing ${t.did} near compute is stuck: ${t.stuckReason ?? 'no reason given'}.`,
          {
            autoClose: false
          }
        );
      }
    });

    const context: IPortalContext = {
      api,
      settings: () => settings,
      transfers,
      makeAvailable: async (dids: string[]) => {
        if (!dids.length) {
          return;
        }
        const body = ReactWidget.create(
          <PlacementView api={api} dids={dids} />
        );
        body.addClass('ep-Widget');
        const result = await showDialog({
          title:
            dids.length === 1
              ? 'Make available near compute'
              : `Make ${dids.length} DIDs available near compute`,
          body,
          buttons: [
            Dialog.cancelButton(),
            Dialog.okButton({ label: 'Make available' })
          ]
        });
        if (!result.button.accept) {
          return;
        }
        try {
          const answer = await api.makeAvailable(dids);
          for (const request of answer.requests) {
            transfers.track(request);
          }
          const moving = answer.requests.filter(r => r.state !== 'available');
          if (moving.length) {
            const bytes = moving.reduce(
              (n, r) => n + (r.progress?.bytes_total ?? 0),
              0
            );
            Notification.info(
              `Bringing ${moving.length} DID(s) (${formatBytes(bytes)}) near compute (${answer.compute_site ?? 'your site'}).`,
              { autoClose: 5000 }
            );
          }
        } catch (reason) {
          Notification.error(`Make available failed: ${userMessage(reason)}`, {
            autoClose: false
          });
        }
      },
      openInNotebook: async (did: string, type: string | null) => {
        try {
          if (settings.openAction === 'attach') {
            await nb.attachToNotebook(app, notebooks, [did]);
          } else {
            await nb.openInNotebook(app, notebooks, did, type);
          }
        } catch (reason) {
          Notification.error(
            `Could not open ${did} in a notebook: ${userMessage(reason)}`
          );
        }
      },
      attachToNotebook: async (dids: string[]) => {
        try {
          const panel = await nb.attachToNotebook(app, notebooks, dids);
          Notification.info(
            `${dids.length} DID(s) attached to ${panel.context.path}.`,
            { autoClose: 4000 }
          );
        } catch (reason) {
          Notification.error(
            `Could not attach to the notebook: ${userMessage(reason)}`
          );
        }
      }
    };

    const lake = new DataLakeWidget(context);
    const vo = new VOSearchWidget(context);
    app.shell.add(lake, 'left', { rank: 600 });
    app.shell.add(vo, 'left', { rank: 610 });
    if (restorer) {
      restorer.add(lake, lake.id);
      restorer.add(vo, vo.id);
    }

    const { commands } = app;
    commands.addCommand(CommandIDs.openDataLake, {
      label: 'Open the Data Lake panel',
      caption: 'Browse and search the ESCAPE data lake',
      execute: () => app.shell.activateById(lake.id)
    });
    commands.addCommand(CommandIDs.openVOSearch, {
      label: 'Open the VO Search panel',
      caption: 'Search the Virtual Observatory',
      execute: () => app.shell.activateById(vo.id)
    });
    commands.addCommand(CommandIDs.makeAvailable, {
      label: 'Make Data Available Near Compute…',
      caption: 'Explain where the data will go, then bring it near the compute',
      execute: async args =>
        context.makeAvailable(await didsOf(args, 'Make available near compute'))
    });
    commands.addCommand(CommandIDs.openInNotebook, {
      label: 'Open Lake Data in Notebook…',
      caption: 'Insert a cell that opens a DID with the right reader',
      execute: async args => {
        const [did] = await didsOf(args, 'Open in notebook');
        if (did) {
          await context.openInNotebook(
            did,
            typeof args.type === 'string' ? args.type : null
          );
        }
      }
    });
    commands.addCommand(CommandIDs.attachToNotebook, {
      label: 'Attach Lake Data to Notebook…',
      caption: "Keep DIDs in the notebook's metadata (escape_portal.dids)",
      execute: async args => {
        const dids = await didsOf(args, 'Attach to notebook');
        if (dids.length) {
          await context.attachToNotebook(dids);
        }
      }
    });
    if (palette) {
      for (const command of [
        CommandIDs.openDataLake,
        CommandIDs.openVOSearch,
        CommandIDs.makeAvailable,
        CommandIDs.openInNotebook,
        CommandIDs.attachToNotebook
      ]) {
        palette.addItem({ command, category: CATEGORY });
      }
    }

    if (settingRegistry) {
      settingRegistry
        .load(plugin.id)
        .then(loaded => {
          settings = readSettings(loaded);
          loaded.changed.connect(() => {
            settings = readSettings(loaded);
            lake.update();
            vo.update();
          });
          lake.update();
          vo.update();
        })
        .catch(reason =>
          console.error('ESCAPE Portal: settings not loaded.', reason)
        );
    }
  }
};

export default plugin;
