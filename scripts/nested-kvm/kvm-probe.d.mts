export const KVM_API_VERSION: number;
export function probeKvm(path?: string): Promise<{ usable: boolean; reason: string; apiVersion?: number }>;
