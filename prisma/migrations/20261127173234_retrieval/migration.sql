-- AlterEnum
ALTER TYPE "RequestErrorType" ADD VALUE 'VECTOR_STORE_UNAVAILABLE';

-- AlterTable
ALTER TABLE "requests" ADD COLUMN     "sources" JSONB;
