// `ob-events clients add|list|show|update|revoke|delete`.
import { clientView } from '../../domain/clientView.js';
import { CliError } from '../index.js';
import { printJson, withServices } from '../context.js';
import { readJsonFile } from '../files.js';

export interface ClientsAddOptions {
  clientId: string;
  jwks?: string;
  jwksUri?: string;
  auth: string;
  tlsSubjectDn?: string;
  tlsCertThumbprint?: string[];
  scopes?: string[];
  name?: string;
  signingIss?: string;
}

export async function clientsAdd(o: ClientsAddOptions): Promise<void> {
  if ((o.jwks === undefined) === (o.jwksUri === undefined)) {
    throw new CliError('give --jwks FILE or --jwks-uri URL (one of them)');
  }
  const jwks = o.jwks !== undefined ? readJsonFile(o.jwks) : undefined;
  await withServices(async ({ clients }) => {
    const client = await clients.register({
      clientId: o.clientId,
      jwks,
      jwksUri: o.jwksUri,
      authMethod: o.auth,
      tlsSubjectDn: o.tlsSubjectDn,
      tlsCertThumbprints: o.tlsCertThumbprint,
      scopes: o.scopes,
      name: o.name,
      signingIss: o.signingIss,
    });
    printJson(clientView(client));
  });
}

export type ClientsUpdateOptions = Omit<
  ClientsAddOptions,
  'clientId' | 'auth' | 'tlsCertThumbprint'
> & {
  auth?: string;
  /** Repeated --tls-cert-thumbprint; false with --no-tls-cert-thumbprint. */
  tlsCertThumbprint?: string[] | false;
};

export async function clientsUpdate(id: string, o: ClientsUpdateOptions): Promise<void> {
  if (o.jwks !== undefined && o.jwksUri !== undefined) {
    throw new CliError('give --jwks FILE or --jwks-uri URL, not both');
  }
  const jwks = o.jwks !== undefined ? readJsonFile(o.jwks) : undefined;
  await withServices(async ({ clients }) => {
    const client = await clients.update(id, {
      jwks,
      jwksUri: o.jwksUri,
      authMethod: o.auth,
      tlsSubjectDn: o.tlsSubjectDn,
      // --tls-cert-thumbprint X… replaces the pins; --no-tls-cert-thumbprint removes them.
      tlsCertThumbprints: o.tlsCertThumbprint === false ? [] : o.tlsCertThumbprint,
      scopes: o.scopes,
      name: o.name,
      signingIss: o.signingIss,
    });
    printJson(clientView(client));
  });
}

export async function clientsList(): Promise<void> {
  await withServices(async ({ clients }) => printJson((await clients.list()).map(clientView)));
}

export async function clientsShow(id: string): Promise<void> {
  await withServices(async ({ clients }) => printJson(clientView(await clients.show(id))));
}

export async function clientsRevoke(id: string): Promise<void> {
  await withServices(async ({ clients }) => printJson(clientView(await clients.revoke(id))));
}

export async function clientsDelete(id: string): Promise<void> {
  await withServices(async ({ clients }) => {
    const { client, discardedSets } = await clients.delete(id);
    printJson({ ...clientView(client), discarded_sets: discardedSets });
  });
}
