/** Types shared by the models. */
import { DIDType } from '../tokens';

export type { DIDType };

/** A parsed search of the Data Lake panel. */
export interface IDIDSearchQuery {
  scope: string;
  pattern: string;
  type: DIDType;
  filters: string[];
  /** What in the text could not be understood, as messages for the user. */
  problems: string[];
}
