/** What the panels share: the API, the settings, the transfers and the actions. */
import { PortalAPI } from './api';
import { TransfersModel } from './models/transfers';
import { IPortalSettings } from './tokens';

export interface IPortalContext {
  api: PortalAPI;
  settings: () => IPortalSettings;
  transfers: TransfersModel;
  /** Explain where the data will go, then (if confirmed) make it available near compute. */
  makeAvailable: (dids: string[]) => Promise<void>;
  /** Insert a cell opening the DID into the active notebook (a new one if none). */
  openInNotebook: (did: string, type: string | null) => Promise<void>;
  /** Attach DIDs to the active notebook (its metadata) and insert a cell opening them. */
  attachToNotebook: (dids: string[]) => Promise<void>;
}
