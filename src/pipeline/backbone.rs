//! The feature networks of `sitdiv features`, `eval` and the sweeps, by their one name.

crate::named! {
    /// Feature networks of `sitdiv features`.
    pub enum Backbone {
        /// The FID Inception-v3 with the ADM evaluator's input path: `pool`, `spatial`, `logits`.
        Inception = "inception",
        /// DINOv2 (HF `facebook/dinov2-base` and its PIL processor): the class token, 768-d.
        Dinov2B14 = "dinov2-b14",
        /// DINOv2 ViT-L/14 for FD-DINOv2 as dgm-eval and EDM2 run it: the original release
        /// (`dinov2_vitl14_pretrain.pth`), PIL bicubic to 224 × 224 without a crop, 1024-d.
        Dinov2L14 = "dinov2-l14",
        /// CLIP ViT-B/32 (HF `openai/clip-vit-base-patch32`, PIL processor): `image_embeds`, 512-d.
        ClipB32 = "clip-b32",
        /// CLIP ViT-L/14 (HF `openai/clip-vit-large-patch14`, PIL processor): `image_embeds`, 768-d.
        ClipL14 = "clip-l14",
        /// CLIP ViT-L/14 @ 336 px (HF `openai/clip-vit-large-patch14-336`) for CMMD, fed as CMMD's
        /// authors feed it: centre square crop, PIL bicubic to 336 × 336, CLIP mean/std;
        /// `image_embeds` L2-normalised per row, 768-d.
        ClipL14_336 = "clip-l14-336",
        /// MoCo v3 ResNet-50 trunk (torchvision names), MoCo's evaluation preprocessing, 2048-d.
        Mocov3R50 = "mocov3-r50",
        /// SimCLR v2 ResNet-50 (1×, SK0) trunk (torchvision names), SimCLR's preprocessing, 2048-d.
        SimclrR50 = "simclr-r50",
        /// DreamSim's ensemble (DINO, CLIP and OpenCLIP ViT-B/16, LoRA merged) as the `dreamsim`
        /// package embeds: Resize((224, 224)) bicubic, the towers' features concatenated, centred and
        /// L2-normalised, 1792-d.
        Dreamsim = "dreamsim",
        /// LPIPS v0.1 with the AlexNet trunk at the images' own size: `lpips` rows (N, ~640k at
        /// 256 px), LPIPS(a, b) = ‖row a − row b‖².
        LpipsAlex = "lpips-alex",
        /// LPIPS v0.1 with the VGG16 trunk.
        LpipsVgg = "lpips-vgg",
        /// The toy study's classifier (scripts/train_toy.py): its 64-d pooled features.
        Toy = "toy",
    }
}
