-- Out-of-area referrals (region NULL) belong to no region, so no supervisor saw them and only an admin
-- could assign them by hand, although every supervisor is notified of them. Every supervisor now sees
-- them and may assign them: a referral without a region counts as in every supervisor's region.
-- What a supervisor sees of them is what they see of their own region's referrals: routing facts and
-- the routing record (no PII, which stays with the partner, the case manager and break-glass).
--
-- coalesce(region, own region) = own region: true for the supervisor's region and for no region.

ALTER POLICY supervisor_region ON referrals
    USING ((SELECT refnet_role()) = 'supervisor'
           AND coalesce(region, (SELECT refnet_region())) = (SELECT refnet_region()))
    WITH CHECK ((SELECT refnet_role()) = 'supervisor'
                AND coalesce(region, (SELECT refnet_region())) = (SELECT refnet_region()));

-- Offers of such a referral: listed on its queue page, cancelled and written by a manual assignment.
ALTER POLICY supervisor_region ON assignments
    USING ((SELECT refnet_role()) = 'supervisor'
           AND coalesce(refnet_referral_region(referral_id), (SELECT refnet_region())) = (SELECT refnet_region()))
    WITH CHECK ((SELECT refnet_role()) = 'supervisor'
                AND coalesce(refnet_referral_region(referral_id), (SELECT refnet_region())) = (SELECT refnet_region()));

-- The routing record (the explanation on the queue page) and the manual decision a supervisor adds.
ALTER POLICY supervisor_region ON routing_decisions
    USING ((SELECT refnet_role()) = 'supervisor'
           AND coalesce(refnet_referral_region(referral_id), (SELECT refnet_region())) = (SELECT refnet_region()));
ALTER POLICY manual_assignment ON routing_decisions
    WITH CHECK (kind = 'manual' AND actor_id = (SELECT refnet_actor())
                AND ((SELECT refnet_role()) = 'admin'
                     OR ((SELECT refnet_role()) = 'supervisor'
                         AND coalesce(refnet_referral_region(referral_id), (SELECT refnet_region()))
                             = (SELECT refnet_region()))));

-- The status history shown with the referral.
ALTER POLICY supervisor_region ON referral_transitions
    USING ((SELECT refnet_role()) = 'supervisor'
           AND coalesce(refnet_referral_region(referral_id), (SELECT refnet_region())) = (SELECT refnet_region()));
